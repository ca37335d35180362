// Overview: the cluster at a glance, live from the event feed.
import { useMemo } from "preact/hooks";
import { TimeChart } from "../chart.js";
import { clock, decimal, integer, percent, plural } from "../format.js";
import { html } from "../html.js";
import { useLive } from "../live.js";
import { Badge, Card, Empty, Meter, PageHeader, Spinner, Stat } from "../ui.js";
import { workerUtilization } from "./workers.js";

const THROUGHPUT = [
  { label: "Requests/s", format: (v) => decimal(v) },
  { label: "Tokens/s", scale: "y2", format: (v) => integer(v) },
];
const THROUGHPUT_AXES = {
  y: { label: "requests/s", format: (v) => decimal(v) },
  y2: { label: "tokens/s", format: (v) => integer(v) },
};

function Fleet({ workers }) {
  const online = workers.filter((w) => w.state !== "offline");
  if (online.length === 0) {
    return html`<${Empty} title="No workers online">
      Start one with <code>gpucloud worker --core HOST:PORT --token TOKEN</code>.
    <//>`;
  }
  return html`
    <ul class="fleet" data-testid="fleet">
      ${online.map(
        (w) => html`
          <li key=${w.id}>
            <div class="fleet-head">
              <a href="#/workers" class="fleet-name">${w.name}</a>
              <span class="muted small fleet-gpu">${w.gpus.map((g) => g.name).join(", ")}</span>
            </div>
            <div class="fleet-load">
              <${Meter} value=${workerUtilization(w)} label=${percent(workerUtilization(w))} />
              <span class="small muted nowrap">${w.activeTasks} / ${w.slots} slots</span>
            </div>
          </li>
        `,
      )}
    </ul>
  `;
}

function RecentErrors({ errors, count }) {
  if (errors.length === 0 && count > 0) {
    // Failures of the last 10 s from before this page opened: only later ones come with details.
    return html`<${Empty} title=${`${plural(count, "recent error")}`} testid="errors-earlier">
      Details of new failures show up here as they happen.
    <//>`;
  }
  if (errors.length === 0) {
    return html`<${Empty} title="No errors" testid="errors-empty">Failed tasks will show up here.<//>`;
  }
  return html`
    <ul class="error-list" data-testid="recent-errors">
      ${errors.slice(0, 8).map(
        (e) => html`
          <li key=${`${e.taskId}${e.time}`}>
            <span class="mono small muted">${clock(e.time)}</span>
            <${Badge} tone="error">${e.code}<//>
            <span class="mono small">${e.model}</span>
            <span class="error-message">${e.message}</span>
          </li>
        `,
      )}
    </ul>
  `;
}

export function OverviewPage() {
  const live = useLive();
  const { stats, history, errors } = live;
  const workers = [...live.workers.values()];
  const data = useMemo(
    () => [history.map((p) => p.t), history.map((p) => p.rps), history.map((p) => p.tps)],
    [history],
  );
  // A count from the core (tasks failed in the last 10 s), not the list of task_error events.
  const recentErrorCount = stats?.recentErrors ?? 0;

  return html`
    <${PageHeader} title="Overview" subtitle="The cluster right now; updates every second." />
    ${!stats && live.problem && html`<div class="alert alert-error" data-testid="error">${live.problem}</div>`}
    <div class="stats" data-testid="overview-stats">
      <${Stat}
        label="Workers online"
        testid="stat-workers"
        value=${stats ? html`${stats.workersOnline}<small> / ${stats.workersTotal}</small>` : "–"}
        detail=${stats && stats.workersOnline === 0 ? "no capacity" : "connected agents"}
        tone=${stats && stats.workersOnline === 0 ? "bad" : null}
      />
      <${Stat}
        label="GPU utilisation"
        testid="stat-gpu"
        value=${stats ? percent(stats.gpuUtilizationPercent) : "–"}
        detail=${stats && html`<${Meter} value=${stats.gpuUtilizationPercent} />`}
      />
      <${Stat}
        label="Queue depth"
        testid="stat-queue"
        value=${stats ? integer(stats.queueDepth) : "–"}
        detail=${stats ? `${integer(stats.running)} running` : null}
      />
      <${Stat} label="Requests/s" testid="stat-rps" value=${stats ? decimal(stats.requestsPerSecond) : "–"} />
      <${Stat} label="Tokens/s" testid="stat-tps" value=${stats ? integer(stats.tokensPerSecond) : "–"} />
      <${Stat}
        label="Recent errors"
        testid="stat-errors"
        value=${stats ? integer(recentErrorCount) : "–"}
        detail=${stats ? "last 10 s" : null}
        tone=${recentErrorCount > 0 ? "warn" : null}
      />
    </div>
    <div class="grid grid-main">
      <${Card} title="Throughput, last 3 minutes" testid="throughput-card">
        ${history.length < 2
          ? html`<${Spinner} label="Waiting for the live feed…" />`
          : html`<${TimeChart} series=${THROUGHPUT} axes=${THROUGHPUT_AXES} data=${data} height=${240} seconds testid="throughput-chart" />`}
      <//>
      <${Card} title="Fleet" actions=${html`<a href="#/workers">All workers →</a>`}>
        ${live.workersLoaded ? html`<${Fleet} workers=${workers} />` : html`<${Spinner} />`}
      <//>
    </div>
    <${Card} title="Recent errors" testid="errors-card">
      <${RecentErrors} errors=${errors} count=${recentErrorCount} />
    <//>
  `;
}
