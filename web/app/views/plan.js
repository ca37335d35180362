// Plan: the capacity planner — a workload and SLOs in, the cheapest simulated fleet out.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api.js";
import { decimal, duration, integer, plural } from "../format.js";
import { usePoll } from "../hooks.js";
import { html } from "../html.js";
import { Badge, Card, Empty, ErrorBox, PageHeader, Spinner, Stat } from "../ui.js";

const BREAKS = {
  ttft_p99: "TTFT p99",
  tpot_p99: "TPOT p99",
  memory: "memory (the model does not fit)",
  precision: "precision (no FP8 on this GPU)",
};

/** The form field an API error's `param` points at, to mark it invalid. */
function fieldOf(param) {
  if (!param) return null;
  if (param.startsWith("prices.")) return `price-${param.slice(7)}`;
  const tail = param.replace(/^workloads\[\d+\]\./, "").replace(/^slo\./, "");
  return tail.split(".")[0];
}

function objectives(slo) {
  return `TTFT p99 ≤ ${duration(slo.ttftP99Ms)} and TPOT p99 ≤ ${duration(slo.tpotP99Ms)}`;
}

export function money(dollars) {
  return dollars === null || dollars === undefined ? "–" : `$${dollars.toFixed(2)}`;
}

function shortGpu(catalog, key) {
  const name = catalog.gpus.find((g) => g.key === key)?.name || key;
  return name.replace(/^NVIDIA (GeForce )?/, "");
}

function initialForm(catalog) {
  const d = catalog.defaults;
  return {
    model: catalog.models[0]?.id || "",
    ratePerSecond: String(d.ratePerSecond),
    promptTokens: String(d.promptTokens),
    outputTokens: String(d.outputTokens),
    ttftP99Ms: String(d.slo.ttftP99Ms),
    tpotP99Ms: String(d.slo.tpotP99Ms),
    precision: d.precision,
    gpus: Object.fromEntries(
      catalog.gpus.map((g) => [g.key, { on: g.pricePerGpuHour !== null, price: String(g.pricePerGpuHour ?? "") }]),
    ),
  };
}

/** The form as POST /api/plan's body; the server checks every value and names a bad one. */
function planBody(form) {
  const chosen = Object.entries(form.gpus).filter(([, g]) => g.on);
  return {
    workloads: [
      {
        model: form.model,
        ratePerSecond: Number(form.ratePerSecond),
        promptTokens: { mean: Number(form.promptTokens) },
        outputTokens: { mean: Number(form.outputTokens) },
      },
    ],
    slo: { ttftP99Ms: Number(form.ttftP99Ms), tpotP99Ms: Number(form.tpotP99Ms) },
    gpus: chosen.map(([key]) => key),
    prices: Object.fromEntries(chosen.map(([key, g]) => [key, Number(g.price)])),
    precision: form.precision,
  };
}

function NumberField({ name, label, unit, form, set, invalid, min = "0", step = "any" }) {
  return html`
    <label>
      <span class="label-row">${label} <span class="muted small">${unit}</span></span>
      <input name=${name} type="number" inputmode="decimal" min=${min} step=${step} required
        value=${form[name]} onInput=${set(name)} aria-invalid=${invalid === name ? "true" : undefined}
        data-testid=${`plan-${name}`} />
    </label>
  `;
}

function GpuChoices({ catalog, form, setForm, invalid }) {
  const setGpu = (key, change) => setForm({ ...form, gpus: { ...form.gpus, [key]: { ...form.gpus[key], ...change } } });
  return html`
    <fieldset class="plan-gpus" data-testid="plan-gpus">
      <legend>GPU kinds and $ per GPU-hour</legend>
      ${catalog.gpus.map((g) => {
        const choice = form.gpus[g.key];
        const id = `plan-price-${g.key}`;
        return html`
          <div class="plan-gpu" key=${g.key}>
            <label class="toggle">
              <input type="checkbox" checked=${choice.on} data-testid=${`plan-gpu-${g.key}`}
                onChange=${(e) => setGpu(g.key, { on: e.currentTarget.checked })} />
              <span>${shortGpu(catalog, g.key)}${!g.fp8 && html` <span class="muted small">no FP8</span>`}</span>
            </label>
            <span class="plan-price">
              <span aria-hidden="true">$</span>
              <input id=${id} type="number" min="0" step="0.01" inputmode="decimal" required=${choice.on}
                disabled=${!choice.on} value=${choice.price} aria-label=${`${g.name}: $ per GPU-hour`}
                aria-invalid=${invalid === `price-${g.key}` ? "true" : undefined}
                onInput=${(e) => setGpu(g.key, { price: e.currentTarget.value })} data-testid=${id} />
            </span>
          </div>
        `;
      })}
    </fieldset>
  `;
}

function PlanForm({ catalog, busy, invalid, onSubmit }) {
  const [form, setForm] = useState(() => initialForm(catalog));
  const set = (field) => (e) => setForm({ ...form, [field]: e.currentTarget.value });
  const noGpu = !Object.values(form.gpus).some((g) => g.on);
  const submit = (event) => {
    event.preventDefault();
    if (!noGpu) onSubmit(planBody(form));
  };
  const fields = { form, set, invalid };
  return html`
    <form class="form form-grid" onSubmit=${submit} data-testid="plan-form" aria-busy=${busy ? "true" : "false"}>
      <label class="span-2">
        Model
        <select name="model" value=${form.model} onChange=${set("model")} data-testid="plan-model"
          aria-invalid=${invalid === "model" ? "true" : undefined}>
          ${catalog.models.map((m) => html`<option value=${m.id} key=${m.id}>${m.id}</option>`)}
        </select>
      </label>
      <${NumberField} name="ratePerSecond" label="Rate" unit="requests/s" ...${fields} />
      <label>
        Precision
        <select name="precision" value=${form.precision} onChange=${set("precision")} data-testid="plan-precision">
          ${catalog.precisions.map((p) => html`<option value=${p} key=${p}>${p.toUpperCase()}</option>`)}
        </select>
      </label>
      <${NumberField} name="promptTokens" label="Prompt" unit="mean tokens" min="1" step="1" ...${fields} />
      <${NumberField} name="outputTokens" label="Output" unit="mean tokens" min="1" step="1" ...${fields} />
      <${NumberField} name="ttftP99Ms" label="TTFT p99 SLO" unit="ms" ...${fields} />
      <${NumberField} name="tpotP99Ms" label="TPOT p99 SLO" unit="ms" ...${fields} />
      <${GpuChoices} catalog=${catalog} form=${form} setForm=${setForm} invalid=${invalid} />
      <div class="form-actions span-2 plan-actions">
        ${noGpu && html`<span class="muted small" role="status">Choose at least one GPU kind.</span>`}
        <button class="button button-primary" type="submit" disabled=${busy || noGpu} data-testid="plan-submit">
          ${busy ? "Planning…" : "Plan fleet"}
        </button>
      </div>
    </form>
  `;
}

function Verdict({ fleet }) {
  if (fleet.meetsSlo) return html`<${Badge} tone="ok">meets SLO<//>`;
  if (!fleet.breaksOn) return html`<${Badge} tone="error">misses the SLOs<//>`;
  return html`<${Badge} tone="error">breaks on ${BREAKS[fleet.breaksOn] || fleet.breaksOn}<//>`;
}

function FleetRow({ fleet, catalog, label, testid }) {
  const s = fleet.summary;
  return html`
    <tr data-testid=${testid} data-gpu=${fleet.gpu}>
      ${label && html`<th scope="row">${label}</th>`}
      <td class="nowrap" data-testid="plan-gpu-kind">${shortGpu(catalog, fleet.gpu)}</td>
      <td class="num">${fleet.gpuCount}</td>
      <td class="num">${integer(fleet.workers)}</td>
      <td class="num" data-testid="plan-cost">${money(fleet.costPerHour)}/h</td>
      <td class="num">${s ? duration(s.ttftMsP99) : "–"}</td>
      <td class="num">${s ? duration(s.tpotMsP99) : "–"}</td>
      <td class="num">${fleet.headroom ? `${decimal(fleet.headroom, 2)}×` : "–"}</td>
      <td><${Verdict} fleet=${fleet} /></td>
    </tr>
  `;
}

function FleetTable({ fleets, catalog, labelled, testid }) {
  return html`
    <div class="table-wrap">
      <table class="table" data-testid=${testid}>
        <thead>
          <tr>
            ${labelled && html`<th scope="col"><span class="sr-only">Fleet</span></th>`}
            <th scope="col">GPU</th>
            <th scope="col" class="num">GPUs / worker</th>
            <th scope="col" class="num">Workers</th>
            <th scope="col" class="num">Cost</th>
            <th scope="col" class="num">TTFT p99</th>
            <th scope="col" class="num">TPOT p99</th>
            <th scope="col" class="num" title="The largest multiple of the rate it still meets">Headroom</th>
            <th scope="col">Result</th>
          </tr>
        </thead>
        <tbody>
          ${fleets.map(
            ([fleet, label, rowId], i) =>
              html`<${FleetRow} key=${i} fleet=${fleet} catalog=${catalog} label=${labelled && label} testid=${rowId} />`,
          )}
        </tbody>
      </table>
    </div>
  `;
}

/** Candidates the planner never simulated: an optimistic estimate already costs more. */
function Skipped({ skipped, catalog }) {
  return html`
    <div class="plan-skipped" data-testid="plan-skipped">
      <p class="muted small">Not simulated: even an optimistic estimate of these costs more than the cheapest fleet.</p>
      <ul>
        ${skipped.map(
          (k) => html`<li key=${`${k.gpu}-${k.gpuCount}`} class="chip">
            ${shortGpu(catalog, k.gpu)} × ${k.gpuCount} · ≥${plural(k.estimatedWorkers, "worker")}
          </li>`,
        )}
      </ul>
    </div>
  `;
}

function PoolResult({ pool, catalog, slo }) {
  const { best, smaller } = pool;
  const rows = [];
  if (best) rows.push([best, "Cheapest", "plan-best"]);
  if (smaller) rows.push([smaller, "One smaller", "plan-smaller"]);
  return html`
    <${Card} title=${pool.model} testid="plan-pool">
      ${best
        ? html`<div class="stats plan-stats">
            <${Stat} label="Cheapest fleet" testid="plan-fleet"
              value=${`${best.gpus} × ${shortGpu(catalog, best.gpu)}`}
              detail=${`${plural(best.workers, "worker")} of ${plural(best.gpuCount, "GPU")}`} />
            <${Stat} label="Cost" testid="plan-total" value=${`${money(best.costPerHour)}/h`}
              detail=${`${money(best.costPerHour * 24 * 30)} per 30 days`} />
            <${Stat} label="Headroom" value=${best.headroom ? `${decimal(best.headroom, 2)}×` : "–"}
              detail=${best.breaksOn ? `then ${BREAKS[best.breaksOn]} breaks` : "the rate it still meets the SLOs at"} />
          </div>`
        : html`<div class="alert alert-warn" data-testid="plan-none">
            No fleet within the GPU limit meets ${objectives(slo)}. Try other GPU kinds, FP8, or
            looser objectives.
          </div>`}
      ${rows.length > 0 && html`<${FleetTable} fleets=${rows} catalog=${catalog} labelled testid="plan-result" />`}
      ${best && !smaller && html`<p class="muted small">No smaller fleet of this kind to compare: it is the least.</p>`}
      <details class="plan-candidates">
        <summary>
          ${plural(pool.candidates.length + pool.skipped.length, "candidate")} considered:
          ${" "}${integer(pool.candidates.length)} simulated, cheapest first
        </summary>
        <${FleetTable} fleets=${pool.candidates.map((c, i) => [c, "", `plan-candidate-${i}`])} catalog=${catalog}
          testid="plan-candidates" />
        ${pool.skipped.length > 0 && html`<${Skipped} skipped=${pool.skipped} catalog=${catalog} />`}
      </details>
    <//>
  `;
}

function Results({ result, catalog }) {
  const heading = useRef(null);
  useEffect(() => heading.current?.focus(), [result]);
  return html`
    <section class="plan-results" aria-labelledby="plan-results-title" data-testid="plan-results">
      <h2 id="plan-results-title" tabindex="-1" ref=${heading}>
        ${result.meetsSlo ? `Cheapest fleet: ${money(result.costPerHour)}/h` : "No fleet meets the SLOs"}
      </h2>
      <p class="muted small">
        Simulated ${plural(result.runs, "fleet")} on the virtual clock against ${objectives(result.slo)}.
        ${result.truncated && " The run budget ended the search early: a cheaper fleet may exist."}
      </p>
      ${result.pools.map((pool) => html`<${PoolResult} key=${pool.model} pool=${pool} catalog=${catalog} slo=${result.slo} />`)}
    </section>
  `;
}

export function PlanPage() {
  const catalog = usePoll((signal) => api("/api/plan/catalog", { signal }), 0);
  const [run, setRun] = useState({ busy: false, error: null, result: null });
  const controller = useRef(null);
  useEffect(() => () => controller.current?.abort(), []);

  async function plan(body) {
    controller.current?.abort();
    controller.current = new AbortController();
    setRun((r) => ({ ...r, busy: true, error: null }));
    try {
      const result = await api("/api/plan", { method: "POST", body, signal: controller.current.signal });
      setRun({ busy: false, error: null, result });
    } catch (error) {
      if (error.name !== "AbortError") setRun((r) => ({ ...r, busy: false, error }));
    }
  }

  let form;
  if (catalog.error && !catalog.data) form = html`<${ErrorBox} error=${catalog.error} testid="plan-catalog-error" />`;
  else if (!catalog.data) form = html`<${Spinner} />`;
  else {
    form = html`<${PlanForm} catalog=${catalog.data} busy=${run.busy} invalid=${fieldOf(run.error?.param)}
      onSubmit=${plan} />`;
  }
  const retry = run.error?.status === 429 && run.error.retryAfterMs;
  return html`
    <${PageHeader}
      title="Plan"
      subtitle="The cheapest fleet that meets your latency objectives, from the GPU simulator."
    />
    <${Card} title="Workload">
      ${form}
      <div aria-live="polite">
        ${run.error &&
        html`<div class="plan-error"><${ErrorBox} error=${run.error} testid="plan-error" />
          ${retry && html`<p class="muted small">Try again in ${duration(retry)}.</p>`}</div>`}
      </div>
    <//>
    <div aria-live="polite">
      ${run.busy && html`<${Spinner} label="Simulating fleets…" />`}
    </div>
    ${run.result && catalog.data && html`<${Results} result=${run.result} catalog=${catalog.data} />`}
    ${!run.result && !run.busy && catalog.data &&
    html`<${Empty} title="No plan yet" testid="plan-empty">Describe the traffic and press Plan fleet.<//>`}
  `;
}
