// Line icons for the navigation, drawn on a 24-unit grid.
import { html } from "./html.js";

const PATHS = {
  overview: ["M12 14l4-4", "M3.34 19a10 10 0 1 1 17.32 0"],
  workers: [
    "M6 4h12a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    "M9 9h6v6H9z",
    "M9 1v3M15 1v3M9 20v3M15 20v3M20 9h3M20 14h3M1 9h3M1 14h3",
  ],
  queue: ["M8 6h13M8 12h13M8 18h13", "M3 6h.01M3 12h.01M3 18h.01"],
  keys: ["M13 7.5a5.5 5.5 0 1 1-11 0 5.5 5.5 0 0 1 11 0z", "M11.4 11.4 21 21", "M16 16l2-2M18.5 18.5l2-2"],
  playground: ["M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z", "M8 9h8M8 13h5"],
  metrics: ["M3 3v18h18", "M18 17V9M13 17V5M8 17v-3"],
  plan: ["M12 2 2 7l10 5 10-5-10-5z", "M2 17l10 5 10-5", "M2 12l10 5 10-5"],
};

export function Icon({ name, size = 18 }) {
  return html`
    <svg width=${size} height=${size} viewBox="0 0 24 24" fill="none" stroke="currentColor"
      stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
      ${(PATHS[name] || []).map((d) => html`<path d=${d} />`)}
    </svg>
  `;
}
