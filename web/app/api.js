// Calls to the gateway's management API: the JWT, the OpenAI error envelope, expired sessions.
import { currentSession, endSession } from "./session.js";

/** An error answer from the gateway (status 0 when it could not be reached at all). */
export class ApiError extends Error {
  constructor(status, message, { type = null, code = null, param = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
  }

  /** The core is down or has no capacity: worth retrying later. */
  get unavailable() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

/** Reads the `{"error": {...}}` envelope, falling back to the status line. */
export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): the status line is all there is.
  }
  const error = body && typeof body.error === "object" && body.error !== null ? body.error : {};
  const message = error.message || describeStatus(response.status);
  const failure = new ApiError(response.status, message, error);
  // When a throttled request may come back (429/503 carry it), in milliseconds.
  failure.retryAfterMs = Number(response.headers.get("retry-after-ms")) || null;
  return failure;
}

function describeStatus(status) {
  if (status === 503) return "The core is not answering right now.";
  if (status === 401) return "Not signed in.";
  if (status === 404) return "Not found.";
  return `The gateway answered ${status}.`;
}

/**
 * JSON request to the management API with the session's JWT. A 401 ends the session, which
 * sends the app back to the login page with a message.
 */
export async function api(path, { method = "GET", body, signal, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const session = currentSession();
  if (auth && session) headers.Authorization = `Bearer ${session.token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The gateway cannot be reached. Is gpucloud running?");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    // Only if this session is still the current one: a late answer to a request sent before a
    // sign-out or a new sign-in must not end the session that replaced it.
    if (response.status === 401 && auth && session && currentSession()?.token === session.token) {
      endSession("Your session has expired. Please sign in again.");
    }
    throw error;
  }
  if (response.status === 204) return null;
  return response.json();
}
