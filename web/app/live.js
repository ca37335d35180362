// The live feed: one EventSource per signed-in tab, folded into workers, stats and recent errors.
// Shapes are those of monitor.proto as docs/management-api.md renders them: `stats.recentErrors`
// is a count (tasks failed in the last 10 s); the details of each failure come as `task_error`.
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.js";
import { currentSession } from "./session.js";

const HISTORY_SECONDS = 180;
const MAX_ERRORS = 50;
const MAX_RETRY_MS = 15000;

function initialState() {
  return {
    status: "connecting", // "connecting" | "live" | "reconnecting"
    problem: null, // why the feed is not live, for the header
    stats: null, // the latest `stats` event; recentErrors is a number
    history: [], // [{t (s), rps, tps, util, queue}]
    workers: new Map(), // id -> worker
    workersLoaded: false,
    errors: [], // task_error events since the feed opened, newest first
  };
}

class LiveFeed {
  constructor() {
    this.state = initialState();
    this.listeners = new Set();
    this.source = null;
    this.retryTimer = null;
    this.retryMs = 1000;
    this.running = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.state = initialState();
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = null;
    this.state = initialState();
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  update(patch) {
    this.state = { ...this.state, ...patch };
    for (const fn of this.listeners) fn(this.state);
  }

  connect() {
    const session = currentSession();
    if (!this.running || !session) return;
    const url = `/api/monitoring/events?token=${encodeURIComponent(session.token)}`;
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("open", () => {
      this.retryMs = 1000;
      this.update({ status: "live", problem: null });
      // Whatever happened while we were away: start from the full list, then follow events.
      this.loadWorkers();
    });
    source.addEventListener("worker", (e) => this.onWorker(JSON.parse(e.data)));
    source.addEventListener("stats", (e) => this.onStats(JSON.parse(e.data)));
    source.addEventListener("task_error", (e) => this.onTaskError(JSON.parse(e.data)));
    // A failure after the feed began arrives as an unnamed event carrying the error envelope.
    source.addEventListener("message", (e) => this.onFeedError(JSON.parse(e.data)));
    source.addEventListener("error", () => this.onDisconnect(source));
  }

  async onDisconnect(source) {
    if (source !== this.source || !this.running) return;
    // The browser retries by itself after a dropped connection, but gives up on an HTTP error
    // (an expired JWT, the core down): then find out why and retry ourselves.
    if (source.readyState !== EventSource.CLOSED) {
      this.update({ status: "reconnecting", problem: "Connection lost, reconnecting…" });
      return;
    }
    source.close();
    this.source = null;
    let problem = "Live feed unavailable, retrying…";
    try {
      await api("/api/auth/me"); // a 401 here ends the session and stops the feed
    } catch (err) {
      if (err.unavailable) problem = err.message;
    }
    if (!this.running) return;
    this.update({ status: "reconnecting", problem });
    this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }

  onFeedError(body) {
    const message = body?.error?.message || "The live feed failed.";
    this.update({ status: "reconnecting", problem: `${message} Reconnecting…` });
  }

  async loadWorkers() {
    try {
      const { workers } = await api("/api/monitoring/workers");
      this.update({ workers: new Map(workers.map((w) => [w.id, w])), workersLoaded: true });
    } catch (err) {
      if (err.unavailable) this.update({ problem: err.message });
    }
  }

  onWorker(worker) {
    const workers = new Map(this.state.workers);
    workers.set(worker.id, worker);
    this.update({ workers });
  }

  onStats(stats) {
    const t = Date.now() / 1000;
    const point = {
      t,
      rps: stats.requestsPerSecond ?? 0,
      tps: stats.tokensPerSecond ?? 0,
      util: stats.gpuUtilizationPercent ?? 0,
      queue: stats.queueDepth ?? 0,
    };
    const history = [...this.state.history.filter((p) => p.t > t - HISTORY_SECONDS), point];
    this.update({ stats, history, status: "live", problem: null });
  }

  onTaskError(error) {
    this.update({ errors: mergeErrors(this.state.errors, [error]) });
  }
}

function errorKey(e) {
  return `${e.taskId}|${e.time}|${e.code}`;
}

function mergeErrors(known, incoming) {
  const seen = new Set(known.map(errorKey));
  const fresh = incoming.filter((e) => !seen.has(errorKey(e)));
  if (fresh.length === 0) return known;
  return [...fresh, ...known]
    .sort((a, b) => Date.parse(b.time) - Date.parse(a.time))
    .slice(0, MAX_ERRORS);
}

export const liveFeed = new LiveFeed();

/** The live feed's current state; re-renders the caller on every event. */
export function useLive() {
  const [state, setState] = useState(liveFeed.state);
  useEffect(() => liveFeed.subscribe(setState), []);
  return state;
}
