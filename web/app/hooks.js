// Small hooks shared by the pages: a clock tick and polling an endpoint.
import { useEffect, useState } from "preact/hooks";

/** Re-renders the caller every `ms` so ages ("4 s ago") stay true between events. */
export function useTick(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/** Calls `load` now and every `ms` while mounted; returns {data, error, loading, reload}. */
export function usePoll(load, ms, deps = []) {
  const [result, setResult] = useState({ data: null, error: null, loading: true });
  const [nonce, setNonce] = useState(0);
  useEffect(() => {
    let alive = true;
    const controller = new AbortController();
    const run = async () => {
      try {
        const data = await load(controller.signal);
        if (alive) setResult({ data, error: null, loading: false });
      } catch (error) {
        if (alive && error.name !== "AbortError") {
          setResult((r) => ({ data: r.data, error, loading: false }));
        }
      }
    };
    run();
    const timer = ms ? setInterval(run, ms) : null;
    return () => {
      alive = false;
      controller.abort();
      clearInterval(timer);
    };
  }, [...deps, nonce]);
  return { ...result, reload: () => setNonce((n) => n + 1) };
}
