// Workers: every agent the core knows, its GPUs and load, live as workers join, beat and leave.
import { useState } from "preact/hooks";
import { ago, gib, percent } from "../format.js";
import { useTick } from "../hooks.js";
import { html } from "../html.js";
import { useLive } from "../live.js";
import { Badge, Card, Empty, Meter, PageHeader, Spinner } from "../ui.js";

export const STATE_TONES = { online: "ok", draining: "warn", unhealthy: "error", offline: "neutral" };
const STATE_ORDER = { online: 0, draining: 1, unhealthy: 2, offline: 3 };

/** Mean utilisation over the worker's GPUs, or null before its first heartbeat. */
export function workerUtilization(worker) {
  const samples = worker.metrics || [];
  if (samples.length === 0) return null;
  return samples.reduce((sum, m) => sum + m.utilizationPercent, 0) / samples.length;
}

function memory(worker) {
  const total = worker.gpus.reduce((sum, g) => sum + g.memoryTotalBytes, 0);
  const used = (worker.metrics || []).reduce((sum, m) => sum + m.memoryUsedBytes, 0);
  return { used, total };
}

/** "2 × H100 80GB SXM" for identical GPUs, else the names joined. */
function gpuModel(gpus) {
  if (gpus.length === 0) return "no GPU";
  const names = [...new Set(gpus.map((g) => g.name))];
  return names.length === 1 && gpus.length > 1 ? `${gpus.length} × ${names[0]}` : names.join(", ");
}

/** "meta-llama/Llama-3.1-8B-Instruct" -> "Llama-3.1-8B-Instruct": the organisation is in the tooltip. */
function shortModel(id) {
  return id.slice(id.lastIndexOf("/") + 1);
}

function WorkerRow({ worker, now }) {
  const util = workerUtilization(worker);
  const mem = memory(worker);
  const offline = worker.state === "offline";
  return html`
    <tr
      class=${offline ? "row-dim" : ""}
      data-testid="worker-row"
      data-worker-id=${worker.id}
      data-worker-name=${worker.name}
      data-state=${worker.state}
    >
      <td title=${`id ${worker.id} · ${worker.backend} backend`}>
        <div class="strong nowrap">${worker.name}</div>
        <div class="muted small" data-testid="worker-gpu">${gpuModel(worker.gpus)}</div>
      </td>
      <td class="cell-meter">
        <${Meter} value=${mem.used} max=${mem.total} label=${`${gib(mem.used)} / ${gib(mem.total)}`} />
      </td>
      <td class="cell-meter" data-testid="worker-util">
        <${Meter} value=${offline ? 0 : util} label=${offline ? "–" : percent(util)} />
      </td>
      <td class="num" data-testid="worker-load">${worker.activeTasks} / ${worker.slots}</td>
      <td class="models">
        ${worker.models.map((m) => html`<span class="chip" key=${m} title=${m}>${shortModel(m)}</span>`)}
      </td>
      <td class="nowrap" data-testid="worker-heartbeat">${ago(worker.lastHeartbeat, now)}</td>
      <td>
        <${Badge} tone=${STATE_TONES[worker.state] || "neutral"} testid="worker-state">${worker.state}<//>
        ${worker.statusMessage && html`<div class="muted small">${worker.statusMessage}</div>`}
      </td>
    </tr>
  `;
}

export function WorkersPage() {
  const live = useLive();
  const now = useTick(1000);
  const [showOffline, setShowOffline] = useState(true);
  const all = [...live.workers.values()].sort(
    (a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || a.name.localeCompare(b.name),
  );
  const workers = showOffline ? all : all.filter((w) => w.state !== "offline");
  const online = all.filter((w) => w.state === "online").length;
  const slots = all.filter((w) => w.state === "online").reduce((s, w) => s + w.slots, 0);

  let body;
  if (!live.workersLoaded) body = html`<${Spinner} />`;
  else if (workers.length === 0) {
    body = html`<${Empty} title="No workers yet" testid="workers-empty">
      Workers appear here as soon as they connect:
      <code>gpucloud worker --core HOST:PORT --token JOIN_TOKEN --backend sim</code>
    <//>`;
  } else {
    body = html`
      <div class="table-wrap">
        <table class="table" data-testid="workers-table">
          <thead>
            <tr>
              <th>Worker</th>
              <th>Memory</th>
              <th>Utilisation</th>
              <th class="num">Active / slots</th>
              <th>Models</th>
              <th>Heartbeat</th>
              <th>State</th>
            </tr>
          </thead>
          <tbody>
            ${workers.map((w) => html`<${WorkerRow} key=${w.id} worker=${w} now=${now} />`)}
          </tbody>
        </table>
      </div>
    `;
  }

  return html`
    <${PageHeader}
      title="Workers"
      subtitle=${`${online} online of ${all.length} known · ${slots} batch slots available`}
    >
      <label class="toggle">
        <input
          type="checkbox"
          checked=${showOffline}
          onChange=${(e) => setShowOffline(e.currentTarget.checked)}
          data-testid="show-offline"
        />
        Show offline
      </label>
    <//>
    ${live.problem && html`<div class="alert alert-warn" data-testid="live-problem">${live.problem}</div>`}
    <${Card}>${body}<//>
  `;
}
