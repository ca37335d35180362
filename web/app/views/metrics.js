// Metrics: requests and tokens over time, model mix, latency percentiles and per-key usage.
import { useMemo, useState } from "preact/hooks";
import { api } from "../api.js";
import { COLORS, TimeChart } from "../chart.js";
import { compact, duration, integer } from "../format.js";
import { usePoll } from "../hooks.js";
import { html } from "../html.js";
import { Card, Empty, ErrorBox, Meter, PageHeader, Spinner, Stat } from "../ui.js";

const WINDOWS = [
  { minutes: 15, bucket: 15, label: "15 min" },
  { minutes: 60, bucket: 60, label: "1 hour" },
  { minutes: 360, bucket: 300, label: "6 hours" },
  { minutes: 1440, bucket: 900, label: "24 hours" },
];
const REFRESH_MS = 5000;

const REQUEST_SERIES = [
  { label: "Requests", format: integer },
  { label: "Errors", color: COLORS[2], format: integer },
];
const TOKEN_SERIES = [{ label: "Tokens", color: COLORS[1], format: integer }];
const COUNT_AXES = { y: { label: "per bucket", format: compact } };

/** Requests and tokens per model or per key; `share` adds a bar column (the model mix has its own). */
function Slices({ slices, testid, emptyTitle, share = true }) {
  const total = slices.reduce((s, x) => s + x.requests, 0);
  if (total === 0) return html`<${Empty} title=${emptyTitle} testid=${`${testid}-empty`}>No requests in this window.<//>`;
  const sorted = [...slices].sort((a, b) => b.requests - a.requests);
  const percent = (s) => `${Math.round((100 * s.requests) / total)}%`;
  return html`
    <div class="table-wrap"><table class="table" data-testid=${testid}>
      <thead>
        <tr>
          <th>Name</th><th class="num">Requests</th>${share && html`<th>Share</th>`}
          <th class="num" title="prompt / completion">Tokens in / out</th>
        </tr>
      </thead>
      <tbody>
        ${sorted.map(
          (s, i) => html`
            <tr key=${s.id} data-testid=${`${testid}-row`}>
              <td class="nowrap"><span class="swatch" style=${`background:${COLORS[i % COLORS.length]}`}></span>${s.label}</td>
              <td class="num">
                ${integer(s.requests)} ${!share && html`<span class="muted small">${percent(s)}</span>`}
              </td>
              ${share &&
              html`<td class="cell-share"><${Meter} value=${s.requests} max=${total} tone="info" label=${percent(s)} /></td>`}
              <td class="num">${compact(s.promptTokens)} / ${compact(s.completionTokens)}</td>
            </tr>
          `,
        )}
      </tbody>
    </table></div>
  `;
}

function ModelMix({ slices }) {
  const total = slices.reduce((s, x) => s + x.requests, 0);
  if (total === 0) return null;
  const sorted = [...slices].sort((a, b) => b.requests - a.requests);
  return html`
    <div class="mix" data-testid="model-mix-bar" aria-hidden="true">
      ${sorted.map(
        (s, i) => html`<span key=${s.id} style=${`flex:${s.requests};background:${COLORS[i % COLORS.length]}`}
          title=${`${s.label}: ${s.requests}`}></span>`,
      )}
    </div>
  `;
}

function Percentiles({ ttft, total }) {
  const rows = [
    ["p50", ttft?.p50, total?.p50],
    ["p90", ttft?.p90, total?.p90],
    ["p99", ttft?.p99, total?.p99],
  ];
  // Each column on its own scale: first tokens come far sooner than whole answers.
  const maxTtft = Math.max(...rows.map((r) => r[1] || 0), 1);
  const maxTotal = Math.max(...rows.map((r) => r[2] || 0), 1);
  if (!rows.some((r) => r[1] || r[2])) {
    return html`<${Empty} title="No completed requests" testid="latency-empty">Latency shows once requests finish.<//>`;
  }
  return html`
    <table class="table latency" data-testid="latency-table">
      <thead><tr><th></th><th>Time to first token</th><th>Total time</th></tr></thead>
      <tbody>
        ${rows.map(
          ([name, a, b]) => html`
            <tr key=${name}>
              <th scope="row">${name}</th>
              <td class="cell-meter"><${Meter} value=${a} max=${maxTtft} tone="info" label=${duration(a)} /></td>
              <td class="cell-meter"><${Meter} value=${b} max=${maxTotal} tone="accent" label=${duration(b)} /></td>
            </tr>
          `,
        )}
      </tbody>
    </table>
  `;
}

export function MetricsPage() {
  const [win, setWin] = useState(WINDOWS[1]);
  const metrics = usePoll(
    (signal) => api(`/api/monitoring/metrics?windowMinutes=${win.minutes}&bucketSeconds=${win.bucket}`, { signal }),
    REFRESH_MS,
    [win.minutes],
  );
  const m = metrics.data;
  const series = useMemo(() => {
    if (!m) return null;
    const xs = m.buckets.map((b) => Date.parse(b.start) / 1000);
    return {
      requests: [xs, m.buckets.map((b) => b.requests), m.buckets.map((b) => b.errors)],
      tokens: [xs, m.buckets.map((b) => b.tokens)],
    };
  }, [m]);
  const totals = m && {
    requests: m.buckets.reduce((s, b) => s + b.requests, 0),
    tokens: m.buckets.reduce((s, b) => s + b.tokens, 0),
    errors: m.buckets.reduce((s, b) => s + b.errors, 0),
  };

  const picker = html`
    <div class="segmented" role="group" aria-label="Time window" data-testid="metrics-window">
      ${WINDOWS.map(
        (w) => html`<button key=${w.minutes} class=${w === win ? "active" : ""} onClick=${() => setWin(w)}
          data-testid=${`window-${w.minutes}`}>${w.label}</button>`,
      )}
    </div>
  `;

  return html`
    <${PageHeader} title="Metrics" subtitle=${`Last ${win.label}; refreshed every 5 s.`}>${picker}<//>
    <${ErrorBox} error=${metrics.error} />
    ${!m && metrics.loading && html`<${Spinner} />`}
    ${m &&
    html`
      <div class="stats" data-testid="metrics-totals">
        <${Stat} label="Requests" testid="metric-requests" value=${integer(totals.requests)} />
        <${Stat} label="Tokens" testid="metric-tokens" value=${compact(totals.tokens)} />
        <${Stat} label="Errors" testid="metric-errors" value=${integer(totals.errors)} tone=${totals.errors ? "warn" : null} />
        <${Stat} label="TTFT p50" value=${duration(m.timeToFirstToken?.p50)} />
        <${Stat} label="Total p50" value=${duration(m.totalTime?.p50)} />
      </div>
      <div class="grid grid-2">
        <${Card} title="Requests over time">
          <${TimeChart} series=${REQUEST_SERIES} axes=${COUNT_AXES} data=${series.requests} testid="chart-requests" />
        <//>
        <${Card} title="Tokens over time">
          <${TimeChart} series=${TOKEN_SERIES} axes=${COUNT_AXES} data=${series.tokens} testid="chart-tokens" />
        <//>
        <${Card} title="Model mix" testid="model-mix-card">
          <${ModelMix} slices=${m.byModel} />
          <${Slices} slices=${m.byModel} testid="model-mix" emptyTitle="No model traffic" share=${false} />
        <//>
        <${Card} title="Latency percentiles" testid="latency-card">
          <${Percentiles} ttft=${m.timeToFirstToken} total=${m.totalTime} />
        <//>
      </div>
      <${Card} title="Usage per key" testid="key-usage-card">
        <${Slices} slices=${m.byKey} testid="key-usage" emptyTitle="No key traffic" />
      <//>
    `}
  `;
}
