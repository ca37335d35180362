// How numbers, sizes, durations and times read on the dashboard.

const GIB = 1024 ** 3;

export function integer(n) {
  return n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US");
}

/** A rate or other small real: one decimal below 100, none above. */
export function decimal(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 100) return integer(n);
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** 1234567 -> "1.2M" for tight spaces. */
export function compact(n) {
  if (n === null || n === undefined) return "–";
  return Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(n);
}

export function percent(n) {
  return n === null || n === undefined ? "–" : `${Math.round(n)}%`;
}

export function gib(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const value = bytes / GIB;
  return `${value >= 10 ? Math.round(value) : value.toFixed(1)} GiB`;
}

/** Milliseconds as "850 ms", "1.4 s", "2 min 5 s". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** How long ago an ISO time was, from `now` (ms): "4 s ago", "3 min ago". */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 2) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

export function dateTime(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString("en-GB", {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

export function clock(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString("en-GB");
}

export function plural(n, word, words = `${word}s`) {
  return `${integer(n)} ${n === 1 ? word : words}`;
}
