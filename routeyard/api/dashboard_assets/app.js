// The dashboard's shell: the session line, the time window and one tab per view.
import { render } from "./vendor/preact.mjs";
import { useState } from "./vendor/preact-hooks.mjs";
import { api, html, usePoll } from "./lib.js";
import { LiveView } from "./live.js";
import { CacheView, CostView, ErrorsView, LatencyView, TrafficView } from "./views.js";
import { QualityView, SignalsView } from "./quality.js";
import { ConfigView } from "./config.js";
import { FrontierView } from "./frontier.js";

const TABS = [
  ["live", "Live", LiveView],
  ["traffic", "Model mix", TrafficView],
  ["cost", "Cost & savings", CostView],
  ["latency", "Latency", LatencyView],
  ["errors", "Errors & failover", ErrorsView],
  ["cache", "Cache", CacheView],
  ["quality", "Quality", QualityView],
  ["frontier", "Frontier", FrontierView],
  ["signals", "Signals", SignalsView],
  ["config", "Config", ConfigView],
];
const WINDOWS = [[900, "15 min"], [3600, "1 hour"], [6 * 3600, "6 hours"], [86400, "24 hours"],
  [7 * 86400, "7 days"]];

function initialTab() {
  const wanted = window.location.hash.slice(1);
  return TABS.some(([id]) => id === wanted) ? wanted : "live";
}

async function logout() {
  await fetch("/dashboard/logout", {
    method: "POST", credentials: "same-origin", headers: { "x-routeyard-dashboard": "1" },
  });
  window.location.replace("/dashboard");
}

function App() {
  const [tab, setTab] = useState(initialTab);
  const [span, setSpan] = useState(3600);
  const [session] = usePoll(() => api("/dashboard/api/session"), 60000, []);
  const choose = (id) => { setTab(id); window.location.hash = id; };
  const View = TABS.find(([id]) => id === tab)[2];
  return html`
    <header>
      <h1>Routeyard</h1>
      <nav>${TABS.map(([id, label]) => html`
        <button class=${id === tab ? "tab active" : "tab"} data-tab=${id}
          onClick=${() => choose(id)}>${label}</button>`)}
      </nav>
      <div class="session">
        <label>Window <select id="window" value=${span}
          onChange=${(e) => setSpan(Number(e.target.value))}>
          ${WINDOWS.map(([s, label]) => html`<option value=${s}>${label}</option>`)}
        </select></label>
        <span class="muted" id="session-key">${session ? session.key_id : ""}</span>
        <button id="logout" onClick=${logout}>Log out</button>
      </div>
    </header>
    <main id="view" data-view=${tab}><${View} span=${span} /></main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the "Loading…" line: render() does not replace what it did not draw
render(html`<${App} />`, root);
