// Entry point: the session gate, hash routing and the page shell.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { Icon } from "./icons.js";
import { liveFeed, useLive } from "./live.js";
import { currentSession, endSession, onSessionChange } from "./session.js";
import { AccountPage } from "./views/account.js";
import { KeysPage } from "./views/keys.js";
import { LoginPage } from "./views/login.js";
import { MetricsPage } from "./views/metrics.js";
import { OverviewPage } from "./views/overview.js";
import { PlanPage } from "./views/plan.js";
import { PlaygroundPage } from "./views/playground.js";
import { QueuePage } from "./views/queue.js";
import { WorkersPage } from "./views/workers.js";

const PAGES = [
  { path: "overview", label: "Overview", view: OverviewPage },
  { path: "workers", label: "Workers", view: WorkersPage },
  { path: "queue", label: "Queue", view: QueuePage },
  { path: "keys", label: "API keys", view: KeysPage },
  { path: "playground", label: "Playground", view: PlaygroundPage },
  { path: "metrics", label: "Metrics", view: MetricsPage },
  { path: "plan", label: "Plan", view: PlanPage },
];
const ACCOUNT = { path: "account", label: "Account", view: AccountPage };

/** `#/keys?x=1` -> {path: "keys", params: URLSearchParams("x=1")} */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { path: path || "overview", params: new URLSearchParams(query) };
}

function useRoute() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const onChange = () => setRoute(parseHash());
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

function useSession() {
  const [session, setSession] = useState(currentSession);
  useEffect(() => onSessionChange(() => setSession(currentSession())), []);
  return session;
}

function LiveIndicator() {
  const { status, problem } = useLive();
  const label = status === "live" ? "Live" : status === "connecting" ? "Connecting…" : "Offline";
  return html`
    <span class=${`live live-${status}`} data-testid="live-status" title=${problem || label}>
      <span class="live-dot"></span>${label}
    </span>
  `;
}

function PasswordBanner() {
  return html`
    <div class="banner" data-testid="password-banner" role="status">
      <span>
        <strong>You are still using the default password.</strong> Anyone who knows it can sign
        in as you.
      </span>
      <a class="button button-small" href="#/account" data-testid="change-password-link">
        Change password
      </a>
    </div>
  `;
}

function Shell({ session, route }) {
  const page = PAGES.find((p) => p.path === route.path) || (route.path === "account" ? ACCOUNT : PAGES[0]);
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => setMenuOpen(false), [route.path]);
  useEffect(() => {
    document.title = `${page.label} · gpucloud`;
  }, [page]);
  const View = page.view;
  return html`
    <div class=${`shell ${menuOpen ? "menu-open" : ""}`}>
      <aside class="sidebar">
        <a class="brand" href="#/overview">
          <img src="favicon.svg" alt="" width="28" height="28" /><span>gpucloud</span>
        </a>
        <nav data-testid="nav">
          ${PAGES.map(
            (p) => html`
              <a
                href=${`#/${p.path}`}
                class=${p === page ? "active" : ""}
                aria-current=${p === page ? "page" : undefined}
                data-testid=${`nav-${p.path}`}
              >
                <${Icon} name=${p.path} />${p.label}
              </a>
            `,
          )}
        </nav>
      </aside>
      <div class="main">
        <header class="topbar">
          <button
            class="menu-button"
            aria-label="Menu"
            onClick=${() => setMenuOpen(!menuOpen)}
            data-testid="menu-button"
          >
            ☰
          </button>
          <${LiveIndicator} />
          <div class="topbar-user">
            <a href="#/account" data-testid="user-email" title="Account">${session.user.email}</a>
            <span class="role">${session.user.role}</span>
            <button class="button button-ghost button-small" data-testid="logout" onClick=${() => endSession()}>
              Sign out
            </button>
          </div>
        </header>
        ${session.user.mustChangePassword && page !== ACCOUNT && html`<${PasswordBanner} />`}
        <main class="content" data-testid=${`page-${page.path}`}>
          <${View} session=${session} params=${route.params} />
        </main>
      </div>
    </div>
  `;
}

/** Signs out when the JWT expires, rather than at the next failing request. */
function useExpiry(expiresAt) {
  useEffect(() => {
    if (!expiresAt) return undefined;
    // setTimeout takes at most 2^31-1 ms (~24.8 days); a longer session just keeps its timer off.
    const ms = Date.parse(expiresAt) - Date.now();
    if (!(ms < 2 ** 31 - 1)) return undefined;
    const timer = setTimeout(() => endSession("Your session has expired. Please sign in again."), Math.max(0, ms));
    return () => clearTimeout(timer);
  }, [expiresAt]);
}

function App() {
  const session = useSession();
  const route = useRoute();
  const signedIn = session !== null;
  useEffect(() => {
    if (signedIn) liveFeed.start();
    else liveFeed.stop();
  }, [signedIn]);
  useExpiry(session?.expiresAt);
  if (!signedIn) return html`<${LoginPage} />`;
  return html`<${Shell} session=${session} route=${route} />`;
}

render(html`<${App} />`, document.getElementById("app"));
