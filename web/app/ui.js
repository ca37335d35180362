// Building blocks every page uses: headers, cards, stats, meters, badges, empty and error states.
import { useEffect, useRef } from "preact/hooks";
import { html } from "./html.js";

export function PageHeader({ title, subtitle, children }) {
  return html`
    <header class="page-header">
      <div>
        <h1 data-testid="page-title">${title}</h1>
        ${subtitle && html`<p class="muted">${subtitle}</p>`}
      </div>
      ${children && html`<div class="page-actions">${children}</div>`}
    </header>
  `;
}

export function Card({ title, actions, children, class: cls = "", testid }) {
  return html`
    <section class=${`card ${cls}`} data-testid=${testid}>
      ${(title || actions) &&
      html`<div class="card-head">
        ${title && html`<h2>${title}</h2>`} ${actions && html`<div class="card-actions">${actions}</div>`}
      </div>`}
      ${children}
    </section>
  `;
}

export function Stat({ label, value, detail, testid, tone }) {
  return html`
    <div class=${`stat ${tone ? `stat-${tone}` : ""}`} data-testid=${testid}>
      <div class="stat-label">${label}</div>
      <div class="stat-value" data-testid=${testid && `${testid}-value`}>${value}</div>
      ${detail && html`<div class="stat-detail">${detail}</div>`}
    </div>
  `;
}

/** A horizontal bar filled to `value` of `max` (percent by default). */
export function Meter({ value, max = 100, label, tone }) {
  const ratio = max > 0 && value !== null && value !== undefined ? Math.min(1, value / max) : 0;
  const level = tone || (ratio > 0.9 ? "hot" : ratio > 0.7 ? "warm" : "ok");
  return html`
    <div class="meter" title=${label}>
      <div class="meter-track">
        <div class=${`meter-fill meter-${level}`} style=${`width:${(ratio * 100).toFixed(1)}%`}></div>
      </div>
      ${label && html`<span class="meter-label">${label}</span>`}
    </div>
  `;
}

export function Badge({ tone = "neutral", children, testid }) {
  return html`<span class=${`badge badge-${tone}`} data-testid=${testid}>${children}</span>`;
}

export function Empty({ title, children, testid = "empty-state" }) {
  return html`
    <div class="empty" data-testid=${testid}>
      <div class="empty-title">${title}</div>
      ${children && html`<div class="muted">${children}</div>`}
    </div>
  `;
}

/** An API failure in words, with a hint for the usual causes. */
export function ErrorBox({ error, testid = "error" }) {
  if (!error) return null;
  const hint = error.unavailable
    ? "The dashboard keeps retrying; this clears by itself once the core is back."
    : null;
  return html`
    <div class="alert alert-error" role="alert" data-testid=${testid}>
      <strong>${error.unavailable ? "Core unavailable" : "Something went wrong"}</strong>
      <span>${error.message}</span>
      ${hint && html`<span class="muted">${hint}</span>`}
    </div>
  `;
}

export function Spinner({ label = "Loading…" }) {
  return html`<div class="loading" data-testid="loading"><span class="spinner"></span>${label}</div>`;
}

/** A modal dialog on the native <dialog> element (focus trap and Escape for free). */
export function Modal({ title, onClose, children, testid }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog.open) dialog.showModal();
    return () => dialog.open && dialog.close();
  }, []);
  return html`
    <dialog
      ref=${ref}
      class="modal"
      data-testid=${testid}
      onCancel=${(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <h2>${title}</h2>
      ${children}
    </dialog>
  `;
}
