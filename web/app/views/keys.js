// API keys: create with limits, show the secret once, list with usage, revoke.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ago, compact, dateTime, integer } from "../format.js";
import { usePoll } from "../hooks.js";
import { html } from "../html.js";
import { forgetKey, rememberKey } from "../session.js";
import { Badge, Card, Empty, ErrorBox, Modal, PageHeader, Spinner } from "../ui.js";

const REFRESH_MS = 10000;

export function keyStatus(key, now = Date.now()) {
  if (key.revokedAt) return "revoked";
  if (key.expiresAt && Date.parse(key.expiresAt) <= now) return "expired";
  return "active";
}

const STATUS_TONES = { active: "ok", revoked: "error", expired: "warn" };

/** The create form's fields as the API's body; empty fields are left to the server's defaults. */
function createBody(form) {
  const body = { name: form.get("name").trim() };
  for (const field of ["rateLimitPerMinute", "tokensPerMinute", "priority"]) {
    const value = form.get(field);
    if (value !== "") body[field] = Number(value);
  }
  const expires = form.get("expiresAt");
  if (expires) body.expiresAt = new Date(expires).toISOString();
  const models = form
    .get("allowedModels")
    .split(",")
    .map((m) => m.trim())
    .filter(Boolean);
  if (models.length) body.allowedModels = models;
  return body;
}

function CreateKeyForm({ onCreated, admin }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    const formEl = event.currentTarget;
    setBusy(true);
    setError(null);
    try {
      const created = await api("/api/keys", { method: "POST", body: createBody(new FormData(formEl)) });
      rememberKey(created.key, created.secret);
      formEl.reset();
      onCreated(created);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return html`
    <form class="form form-grid" onSubmit=${submit} data-testid="create-key-form">
      <label class="span-2">
        Name
        <input name="name" required maxlength="100" placeholder="e.g. staging backend" data-testid="key-name" />
      </label>
      <label>
        Requests / min
        <input name="rateLimitPerMinute" type="number" min="1" placeholder="default" data-testid="key-rpm" />
      </label>
      <label>
        Tokens / min
        <input name="tokensPerMinute" type="number" min="1" placeholder="default" data-testid="key-tpm" />
      </label>
      <label>
        Priority
        <input
          name="priority"
          type="number"
          min="1"
          max=${admin ? 10 : 5}
          placeholder=${admin ? "default (1–10)" : "default (1–5; higher needs an admin)"}
          data-testid="key-priority"
        />
      </label>
      <label>
        Expires
        <input name="expiresAt" type="datetime-local" data-testid="key-expires" />
      </label>
      <label class="span-2">
        <span class="label-row">Allowed models <span class="muted small">comma-separated; empty allows all</span></span>
        <input name="allowedModels" placeholder="llama-3.1-8b-instruct, qwen2.5-7b-instruct" data-testid="key-models" />
      </label>
      ${error && html`<div class="span-2"><${ErrorBox} error=${error} testid="create-key-error" /></div>`}
      <div class="form-actions span-2">
        <button class="button button-primary" type="submit" disabled=${busy} data-testid="create-key">
          ${busy ? "Creating…" : "Create key"}
        </button>
      </div>
    </form>
  `;
}

function SecretDialog({ created, onClose }) {
  const [copied, setCopied] = useState(false);
  async function copy() {
    try {
      await navigator.clipboard.writeText(created.secret);
    } catch {
      // No clipboard permission (plain http on another host): select the text for Ctrl-C.
      const range = document.createRange();
      range.selectNodeContents(document.querySelector("[data-testid=key-secret]"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      document.execCommand("copy");
    }
    setCopied(true);
  }
  return html`
    <${Modal} title=${`Key “${created.key.name}” created`} onClose=${onClose} testid="secret-dialog">
      <p class="alert alert-warn">
        <strong>Copy the secret now: you will not see it again.</strong> gpucloud stores only a hash.
      </p>
      <div class="secret">
        <code data-testid="key-secret">${created.secret}</code>
        <button class="button" onClick=${copy} data-testid="copy-secret">${copied ? "Copied ✓" : "Copy"}</button>
      </div>
      <p class="muted small">
        This tab remembers it until you sign out, so you can try it in the playground.
      </p>
      <div class="form-actions">
        <a class="button" href=${`#/playground?key=${encodeURIComponent(created.key.id)}`} onClick=${onClose}
          data-testid="try-in-playground">Try in playground</a>
        <button class="button button-primary" onClick=${onClose} data-testid="close-secret">Done</button>
      </div>
    <//>
  `;
}

function RevokeDialog({ keyToRevoke, onClose, onRevoked }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function revoke() {
    setBusy(true);
    try {
      await api(`/api/keys/${encodeURIComponent(keyToRevoke.id)}`, { method: "DELETE" });
      forgetKey(keyToRevoke.id);
      onRevoked();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }
  return html`
    <${Modal} title="Revoke this key?" onClose=${onClose} testid="revoke-dialog">
      <p>
        <strong>${keyToRevoke.name}</strong> <span class="mono">…${keyToRevoke.last4}</span> stops working at once.
        Requests using it get 401. This cannot be undone.
      </p>
      <${ErrorBox} error=${error} />
      <div class="form-actions">
        <button class="button" onClick=${onClose} data-testid="cancel-revoke">Cancel</button>
        <button class="button button-danger" onClick=${revoke} disabled=${busy} data-testid="confirm-revoke">
          ${busy ? "Revoking…" : "Revoke key"}
        </button>
      </div>
    <//>
  `;
}

function KeyRow({ k, admin, onRevoke }) {
  const status = keyStatus(k);
  const limits = [
    k.rateLimitPerMinute ? `${integer(k.rateLimitPerMinute)} req/min` : null,
    k.tokensPerMinute ? `${compact(k.tokensPerMinute)} tok/min` : null,
  ].filter(Boolean);
  return html`
    <tr data-testid="key-row" data-key-id=${k.id} data-key-name=${k.name} data-status=${status}
      class=${status === "active" ? "" : "row-dim"}>
      <td>
        <div class="strong nowrap">${k.name}</div>
        <div class="mono small muted" data-testid="key-last4">…${k.last4}</div>
      </td>
      ${admin && html`<td class="small">${k.ownerEmail}</td>`}
      <td class="small">
        ${limits.length ? limits.map((l) => html`<div class="nowrap" key=${l}>${l}</div>`) : "defaults"}
        ${k.priority > 0 && html`<div class="muted">priority ${k.priority}</div>`}
      </td>
      <td class="small">${k.allowedModels?.length ? k.allowedModels.join(", ") : html`<span class="muted">all</span>`}</td>
      <td class="num" data-testid="key-requests">${integer(k.requests)}</td>
      <td class="num" data-testid="key-tokens">${compact(k.tokens)}</td>
      <td class="small nowrap" title=${dateTime(k.lastUsedAt)}>${ago(k.lastUsedAt)}</td>
      <td class="small nowrap">
        <div>${dateTime(k.createdAt)}</div>
        ${k.expiresAt && html`<div class="muted">expires ${dateTime(k.expiresAt)}</div>`}
      </td>
      <td><${Badge} tone=${STATUS_TONES[status]} testid="key-status">${status}<//></td>
      <td class="actions">
        ${status !== "revoked" &&
        html`<button class="button button-small button-danger-ghost" onClick=${() => onRevoke(k)} data-testid="revoke-key">
          Revoke
        </button>`}
      </td>
    </tr>
  `;
}

export function KeysPage({ session }) {
  const admin = session.user.role === "admin";
  const keys = usePoll((signal) => api("/api/keys", { signal }), REFRESH_MS);
  const [created, setCreated] = useState(null);
  const [revoking, setRevoking] = useState(null);
  const [showRevoked, setShowRevoked] = useState(false);

  const all = keys.data?.keys || [];
  const shown = all
    .filter((k) => showRevoked || !k.revokedAt)
    .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
  const revokedCount = all.filter((k) => k.revokedAt).length;

  let list;
  if (keys.loading) list = html`<${Spinner} />`;
  else if (shown.length === 0) {
    list = html`<${Empty} title="No API keys yet" testid="keys-empty">Create one above to call the OpenAI-compatible API.<//>`;
  } else {
    list = html`
      <div class="table-wrap">
        <table class="table" data-testid="keys-table">
          <thead>
            <tr>
              <th>Name</th>
              ${admin && html`<th>Owner</th>`}
              <th>Limits</th>
              <th>Models</th>
              <th class="num">Requests</th>
              <th class="num">Tokens</th>
              <th>Last used</th>
              <th>Created</th>
              <th>Status</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            ${shown.map((k) => html`<${KeyRow} key=${k.id} k=${k} admin=${admin} onRevoke=${setRevoking} />`)}
          </tbody>
        </table>
      </div>
    `;
  }

  return html`
    <${PageHeader} title="API keys" subtitle="Keys for the OpenAI-compatible API at /v1, each with its own limits." />
    <${Card} title="New key"><${CreateKeyForm} admin=${admin} onCreated=${(c) => { setCreated(c); keys.reload(); }} /><//>
    <${Card}
      title=${`Keys${admin ? " (all users)" : ""}`}
      actions=${revokedCount > 0 &&
      html`<label class="toggle">
        <input type="checkbox" checked=${showRevoked} onChange=${(e) => setShowRevoked(e.currentTarget.checked)}
          data-testid="show-revoked" />
        Show ${revokedCount} revoked
      </label>`}
    >
      <${ErrorBox} error=${keys.error} />
      ${list}
    <//>
    ${created && html`<${SecretDialog} created=${created} onClose=${() => setCreated(null)} />`}
    ${revoking &&
    html`<${RevokeDialog}
      keyToRevoke=${revoking}
      onClose=${() => setRevoking(null)}
      onRevoked=${() => {
        setRevoking(null);
        keys.reload();
      }}
    />`}
  `;
}
