// Account page: who is signed in, and the password change the default admin is asked for.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { dateTime } from "../format.js";
import { html } from "../html.js";
import { saveSession } from "../session.js";
import { Badge, Card, PageHeader } from "../ui.js";

const MIN_PASSWORD = 8;

export function AccountPage({ session }) {
  const { user } = session;
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    const formEl = event.currentTarget;
    const form = new FormData(formEl);
    const newPassword = form.get("newPassword");
    setDone(false);
    if (newPassword.length < MIN_PASSWORD) {
      setError(`The new password needs at least ${MIN_PASSWORD} characters.`);
      return;
    }
    if (newPassword !== form.get("confirm")) {
      setError("The two new passwords differ.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api("/api/auth/password", {
        method: "POST",
        body: { currentPassword: form.get("currentPassword"), newPassword },
      });
      // A password change ends every session of the account, this one included:
      // sign in again with the new password so the page carries on.
      const fresh = await api("/api/auth/login", {
        method: "POST",
        auth: false,
        body: { email: user.email, password: newPassword },
      });
      saveSession(fresh);
      formEl.reset();
      setDone(true);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }

  return html`
    <${PageHeader} title="Account" subtitle="Your sign-in and password." />
    <div class="grid grid-2">
      <${Card} title="Signed in as">
        <dl class="facts">
          <dt>Email</dt>
          <dd data-testid="account-email">${user.email}</dd>
          <dt>Role</dt>
          <dd><${Badge} tone=${user.role === "admin" ? "info" : "neutral"}>${user.role}<//></dd>
          <dt>Member since</dt>
          <dd>${dateTime(user.createdAt)}</dd>
          <dt>Session ends</dt>
          <dd>${dateTime(session.expiresAt)}</dd>
        </dl>
      <//>
      <${Card} title="Change password">
        ${user.mustChangePassword &&
        html`<div class="alert alert-warn" data-testid="password-required">
          This account still has its default password. Choose a new one.
        </div>`}
        ${done && html`<div class="alert alert-ok" data-testid="password-changed">Password changed.</div>`}
        ${error && html`<div class="alert alert-error" role="alert" data-testid="password-error">${error}</div>`}
        <form class="form" onSubmit=${submit} data-testid="password-form">
          <label>
            Current password
            <input name="currentPassword" type="password" autocomplete="current-password" required data-testid="current-password" />
          </label>
          <label>
            New password
            <input
              name="newPassword"
              type="password"
              autocomplete="new-password"
              required
              minlength=${MIN_PASSWORD}
              data-testid="new-password"
            />
          </label>
          <label>
            Repeat new password
            <input name="confirm" type="password" autocomplete="new-password" required data-testid="confirm-password" />
          </label>
          <div class="form-actions">
            <button class="button button-primary" type="submit" disabled=${busy} data-testid="password-submit">
              ${busy ? "Saving…" : "Change password"}
            </button>
          </div>
        </form>
      <//>
    </div>
  `;
}
