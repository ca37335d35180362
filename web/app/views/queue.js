// Queue: what waits for a GPU, by priority, and how long recent tasks waited.
import { api } from "../api.js";
import { duration, integer } from "../format.js";
import { usePoll } from "../hooks.js";
import { html } from "../html.js";
import { Card, Empty, ErrorBox, Meter, PageHeader, Spinner, Stat } from "../ui.js";

const REFRESH_MS = 2000;

function quantile(values, q) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function ByPriority({ rows, depth }) {
  if (rows.length === 0 || depth === 0) {
    return html`<${Empty} title="Nothing waiting" testid="queue-empty">Every task has a GPU.<//>`;
  }
  const sorted = [...rows].sort((a, b) => (b.priority > a.priority ? 1 : -1));
  return html`
    <table class="table" data-testid="queue-priorities">
      <thead><tr><th>Priority</th><th class="num">Waiting</th><th>Share</th></tr></thead>
      <tbody>
        ${sorted.map(
          (r) => html`
            <tr key=${r.priority} data-testid="queue-priority-row">
              <td>${r.priority}</td>
              <td class="num">${integer(r.depth)}</td>
              <td class="cell-meter"><${Meter} value=${r.depth} max=${depth} tone="info" /></td>
            </tr>
          `,
        )}
      </tbody>
    </table>
  `;
}

function RecentWaits({ waits }) {
  if (waits.length === 0) {
    return html`<${Empty} title="No tasks yet" testid="waits-empty">Queue waits of recent tasks show here.<//>`;
  }
  const max = Math.max(...waits, 1);
  return html`
    <div class="wait-strip" data-testid="recent-waits" aria-label="Recent queue waits, oldest first">
      ${waits.map(
        (w, i) => html`<span
          key=${i}
          class="wait-bar"
          style=${`height:${Math.max(3, (w / max) * 100)}%`}
          title=${duration(w)}
        ></span>`,
      )}
    </div>
    <div class="wait-legend muted small">
      <span>p50 ${duration(quantile(waits, 0.5))}</span>
      <span>p90 ${duration(quantile(waits, 0.9))}</span>
      <span>max ${duration(max)}</span>
      <span>${integer(waits.length)} tasks</span>
    </div>
  `;
}

export function QueuePage() {
  const { data, error, loading } = usePoll((signal) => api("/api/monitoring/queue", { signal }), REFRESH_MS);
  if (loading) return html`<${PageHeader} title="Queue" /><${Spinner} />`;
  const q = data;
  return html`
    <${PageHeader} title="Queue" subtitle="Tasks waiting for a free batch slot; refreshed every 2 s." />
    <${ErrorBox} error=${error} />
    ${q &&
    html`
      <div class="stats" data-testid="queue-stats">
        <${Stat}
          label="Waiting"
          testid="queue-depth"
          value=${html`${integer(q.depth)}<small> / ${integer(q.capacity)}</small>`}
          detail=${html`<${Meter} value=${q.depth} max=${q.capacity} />`}
        />
        <${Stat} label="Running" testid="queue-running" value=${integer(q.running)} />
        <${Stat} label="Oldest wait" testid="queue-oldest" value=${q.depth ? duration(q.oldestWaitMs) : "–"} />
        <${Stat} label="Median recent wait" value=${duration(quantile(q.recentWaitsMs, 0.5))} />
      </div>
      <div class="grid grid-2">
        <${Card} title="Depth by priority"><${ByPriority} rows=${q.byPriority} depth=${q.depth} /><//>
        <${Card} title="Recent waits"><${RecentWaits} waits=${q.recentWaitsMs} /><//>
      </div>
    `}
  `;
}
