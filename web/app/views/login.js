// Sign-in page: exchanges email and password for a JWT kept in this tab's sessionStorage.
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { html } from "../html.js";
import { saveSession, sessionNotice } from "../session.js";

export function LoginPage() {
  const [notice] = useState(sessionNotice);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setError(null);
    try {
      const answer = await api("/api/auth/login", {
        method: "POST",
        auth: false,
        body: { email: form.get("email").trim(), password: form.get("password") },
      });
      saveSession(answer);
      if (!location.hash || location.hash === "#/") location.hash = "#/overview";
    } catch (err) {
      setError(err.status === 401 ? "Wrong email or password." : err.message);
      setBusy(false);
    }
  }

  return html`
    <div class="login">
      <form class="login-card" onSubmit=${submit} data-testid="login-form">
        <div class="brand brand-large">
          <img src="favicon.svg" alt="" width="36" height="36" /><span>gpucloud</span>
        </div>
        <p class="muted">Sign in to manage your GPU cloud.</p>
        ${notice && html`<div class="alert alert-info" data-testid="login-notice">${notice}</div>`}
        ${error && html`<div class="alert alert-error" role="alert" data-testid="login-error">${error}</div>`}
        <label>
          Email
          <input name="email" type="email" autocomplete="username" required autofocus data-testid="login-email" />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            data-testid="login-password"
          />
        </label>
        <button class="button button-primary" type="submit" disabled=${busy} data-testid="login-submit">
          ${busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </div>
  `;
}
