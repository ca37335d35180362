// A uPlot time-series chart as a Preact component that follows its container's width.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import { html } from "./html.js";

/** The palette, in series order; matches --series-* in app.css. */
export const COLORS = ["#4f46e5", "#0d9488", "#e11d48", "#d97706", "#7c3aed", "#0284c7"];

function themed(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function axis(label, format, side) {
  const stroke = themed("--muted", "#64748b");
  const grid = themed("--grid", "#e2e8f0");
  // uPlot merges these over its defaults with Object.assign: leave out what we do not set.
  const opts = {
    side,
    stroke,
    labelFont: "12px system-ui, sans-serif",
    font: "11px system-ui, sans-serif",
    grid: { show: side !== 1, stroke: grid, width: 1 },
    ticks: { show: false },
  };
  if (label) Object.assign(opts, { label, labelSize: 18 });
  if (format) Object.assign(opts, { size: 56, values: (_, ticks) => ticks.map(format) });
  return opts;
}

function timeLabel(seconds, withSeconds) {
  const options = { hour: "2-digit", minute: "2-digit" };
  if (withSeconds) options.second = "2-digit";
  return new Date(seconds * 1000).toLocaleTimeString("en-GB", options);
}

/**
 * `series`: [{label, scale?: "y"|"y2", color?, fill?: bool, format?: fn}]; `data`: [xs (s), ys...].
 * `axes`: {y: {label, format}, y2?: {label, format}}; `seconds`: label the time axis to the second.
 */
export function TimeChart({ series, data, axes, height = 220, seconds = false, testid }) {
  const box = useRef(null);
  const plot = useRef(null);

  useEffect(() => {
    const el = box.current;
    const opts = {
      width: el.clientWidth || 600,
      height,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { show: true, live: true },
      scales: { x: { time: true } },
      axes: [
        {
          ...axis(null, null, 2),
          grid: { show: false },
          space: seconds ? 70 : 60,
          values: (_, ticks) => ticks.map((t) => timeLabel(t, seconds)),
        },
        axis(axes.y.label, axes.y.format, 3),
        ...(axes.y2 ? [{ ...axis(axes.y2.label, axes.y2.format, 1), scale: "y2" }] : []),
      ],
      series: [
        { label: "Time", value: (_, t) => (t === null ? "–" : timeLabel(t, true)) },
        ...series.map((s, i) => {
          const color = s.color || COLORS[i % COLORS.length];
          return {
            label: s.label,
            scale: s.scale || "y",
            stroke: color,
            width: 2,
            ...(s.fill === false ? {} : { fill: `${color}1f` }),
            points: { show: false },
            ...(s.format ? { value: (_, v) => (v === null ? "–" : s.format(v)) } : {}),
          };
        }),
      ],
    };
    plot.current = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => {
      if (el.clientWidth > 0) plot.current?.setSize({ width: el.clientWidth, height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [height, series.map((s) => s.label).join("|")]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return html`<div class="chart" ref=${box} data-testid=${testid}></div>`;
}
