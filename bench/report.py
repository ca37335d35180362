"""Ratios, goals and the markdown table of a gateway benchmark run."""

from __future__ import annotations

from typing import Any

# The first targets: >= 70 % of the relay's requests/s at concurrency N, p50 < 2 ms at 1.
THROUGHPUT_GOAL = 0.70
P50_GOAL_MS = 2.0


BASELINES = ("bare", "relay")


def _subjects(found: dict[str, Any]) -> list[str]:
    """What is measured against the baselines: the product, its variants, or --base-url."""
    return [name for name in found if name not in BASELINES]


def ratios(found: dict[str, Any], concurrency: int) -> dict[str, Any]:
    """Each subject against the baselines measured in the same run."""
    cn = f"c{concurrency}"
    out: dict[str, Any] = {}

    def ratio(name: str, a: str, b: str, *path: str) -> None:
        if a in found and b in found:
            x, y = found[a], found[b]
            for key in path:
                x, y = x.get(key, {}), y.get(key, {})
            if x and y:
                out[name] = round(x / y, 3)

    ratio(f"relay_vs_bare_{cn}_rps", "relay", "bare", cn, "requests_per_second")
    for subject in _subjects(found):
        for base in BASELINES:
            ratio(f"{subject}_vs_{base}_{cn}_rps", subject, base, cn, "requests_per_second")
            ratio(f"{subject}_vs_{base}_c1_rps", subject, base, "c1", "requests_per_second")
            ratio(
                f"{subject}_vs_{base}_stream_chunks", subject, base, "stream", "chunks_per_second"
            )
        ratio(
            f"{subject}_vs_relay_{cn}_cpu_per_request", subject, "relay", cn, "cpu_ms_per_request"
        )
    return out


def with_goals(
    found_ratios: dict[str, Any], concurrency: int, found: dict[str, Any]
) -> dict[str, Any]:
    """The ratios plus whether each subject meets the issue's first targets."""
    out = dict(found_ratios)
    for subject in _subjects(found):
        share = out.get(f"{subject}_vs_relay_c{concurrency}_rps")
        if share is not None:
            out[f"goal_{subject}_c{concurrency}_rps_at_least_70pct_of_relay"] = (
                share >= THROUGHPUT_GOAL
            )
        p50 = found[subject].get("c1", {}).get("p50_ms")
        if p50 is not None:
            out[f"goal_{subject}_c1_p50_under_2ms"] = p50 < P50_GOAL_MS
    return out


def _figure(figures: dict[str, Any], name: str, spec: str = ".2f") -> str:
    value = figures.get(name)
    return "-" if value is None else format(value, spec)


def _cpu(figures: dict[str, Any]) -> str:
    return ", ".join(
        f"{role} {value:.0f}" for role, value in figures.get("cpu_percent", {}).items()
    )


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    cn = f"c{s['concurrency']}"
    lines = [
        f"Gateway benchmark, {results['date']}, {results['machine']}, "
        f"revision {results.get('revision', 'unknown')}.",
        f"Model {s['model']}, max_tokens {s['max_tokens']} (streams {s['stream_tokens']}), "
        f"{s['seconds']:g} s per load, median of {s['rounds']} round(s). "
        f"Machine speed: sum(range(10000)) took {results.get('calibration_us_before', 0):.0f} µs "
        f"before and {results.get('calibration_us_after', 0):.0f} µs after "
        "(lower = a quieter machine).",
        "",
        f"| target | c1 req/s | c1 p50 ms | c1 p99 ms | {cn} req/s | {cn} p50 ms | {cn} p99 ms "
        f"| CPU ms/req at {cn} | stream chunks/s ({cn}) | streams/s | stream TTFT p50 ms "
        f"| CPU % at {cn} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    found = results["targets"]
    for name in found:
        t = found[name]
        c1, c, st = t.get("c1", {}), t.get(cn, {}), t.get("stream", {})
        cells = [
            _figure(c1, "requests_per_second", ",.0f"), _figure(c1, "p50_ms"),
            _figure(c1, "p99_ms"), _figure(c, "requests_per_second", ",.0f"),
            _figure(c, "p50_ms"), _figure(c, "p99_ms"), _figure(c, "cpu_ms_per_request"),
            _figure(st, "chunks_per_second", ",.0f"), _figure(st, "streams_per_second", ",.1f"),
            _figure(st, "ttft_p50_ms"), _cpu(c),
        ]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, value in results.get("ratios", {}).items():
        shown = f"{value:.0%}" if isinstance(value, float) else str(value)
        lines.append(f"- {name.replace('_', ' ')}: **{shown}**")
    errors = [
        f"{name} {load}: {figures.get('non_2xx', 0)} non-2xx, "
        f"{figures.get('socket_errors', figures.get('errors', 0))} errors"
        for name, t in found.items()
        for load, figures in t.items()
        if isinstance(figures, dict)
        and (figures.get("non_2xx") or figures.get("socket_errors") or figures.get("errors"))
    ]
    if errors:
        lines += ["", "Errors: " + "; ".join(errors)]
    return "\n".join(lines) + "\n"
