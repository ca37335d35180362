// What this browser tab remembers: the signed-in user's JWT and the API key secrets created here.
// sessionStorage keeps both across reloads of the tab and forgets them when the tab closes.

const SESSION = "gpucloud.session";
const KEYS = "gpucloud.keys";
const NOTICE = "gpucloud.notice";
const listeners = new Set();

function read(name, fallback) {
  try {
    const raw = sessionStorage.getItem(name);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(name, value) {
  if (value === null) sessionStorage.removeItem(name);
  else sessionStorage.setItem(name, JSON.stringify(value));
  for (const fn of listeners) fn();
}

/** The current session `{token, expiresAt, user}`, or null when signed out. */
export function currentSession() {
  return read(SESSION, null);
}

/** The login answer's expiry as ISO 8601; the gateway sends Unix seconds there. */
function isoTime(value) {
  if (typeof value === "number") return new Date(value * 1000).toISOString();
  return value || null;
}

export function saveSession({ token, expiresAt, user }) {
  sessionStorage.removeItem(NOTICE);
  write(SESSION, { token, expiresAt: isoTime(expiresAt), user });
}

/** Signs out; `message` is shown on the login page (e.g. why the session ended). */
export function endSession(message = null) {
  // Kept in storage too, so a reload racing the 401 still tells the user why they are out.
  if (message) sessionStorage.setItem(NOTICE, message);
  else sessionStorage.removeItem(NOTICE);
  sessionStorage.removeItem(KEYS);
  write(SESSION, null);
}

/**
 * Why the last session ended, for the login page. It stays until the next sign-in or sign-out:
 * a tab that showed it and then reloaded (or a reload racing the 401) must still tell the user.
 */
export function sessionNotice() {
  return sessionStorage.getItem(NOTICE);
}

export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** API keys created in this tab, newest first: `{id, name, last4, secret}`. */
export function sessionKeys() {
  return read(KEYS, []);
}

export function rememberKey(key, secret) {
  const keys = sessionKeys().filter((k) => k.id !== key.id);
  write(KEYS, [{ id: key.id, name: key.name, last4: key.last4, secret }, ...keys]);
}

export function forgetKey(id) {
  write(KEYS, sessionKeys().filter((k) => k.id !== id));
}
