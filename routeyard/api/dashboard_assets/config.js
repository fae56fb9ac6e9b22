// The loaded decisions as a tree, and a dry-run box over POST /v1/route.
import { useState } from "./vendor/preact-hooks.mjs";
import { ErrorLine, api, html, usePoll } from "./lib.js";

// A rule tree (all / any / not over family:name leaves) or a `when:` section, as nested lists.
function Tree({ node }) {
  if (node === null || node === undefined) return html`<span class="muted">–</span>`;
  if (Array.isArray(node)) {
    return html`<ul>${node.map((child) => html`<li><${Tree} node=${child} /></li>`)}</ul>`;
  }
  if (typeof node === "object") {
    return html`<ul>${Object.entries(node).map(([key, value]) => html`<li>
      <span class="op">${key}</span>${typeof value === "object" && value !== null
        ? html`<${Tree} node=${value} />` : html` <code>${String(value)}</code>`}</li>`)}</ul>`;
  }
  return html`<code>${String(node)}</code>`;
}

function Decision({ d, isDefault }) {
  const candidates = (d.candidates ?? []).map((c) => (typeof c === "string" ? c : c.model ?? JSON.stringify(c)));
  return html`<details class="decision" open data-decision=${d.name}>
    <summary><b>${d.name}</b> ${isDefault ? html`<span class="muted">(default: nothing else matched)</span>`
      : html`<span class="muted">priority ${d.priority ?? 0}</span>`}</summary>
    ${d.when ? html`<div><span class="op">when</span><${Tree} node=${d.when} /></div>` : null}
    ${d.rules ? html`<div><span class="op">rules</span><${Tree} node=${d.rules} /></div>` : null}
    <div><span class="op">candidates</span> ${candidates.join(", ")}</div>
    <div><span class="op">algorithm</span> ${d.algorithm ?? "static"}
      ${d.algorithm_options && Object.keys(d.algorithm_options).length
        ? html` <code>${JSON.stringify(d.algorithm_options)}</code>` : null}</div>
    ${d.fallback?.length ? html`<div><span class="op">fallback</span> ${d.fallback.join(", ")}</div>` : null}
    ${d.plugins?.length ? html`<div><span class="op">plugins</span><${Tree} node=${d.plugins} /></div>` : null}
    ${d.cascade ? html`<div><span class="op">cascade</span><${Tree} node=${d.cascade} /></div>` : null}
  </details>`;
}

function DryRun() {
  const [prompt, setPrompt] = useState("");
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const run = async (event) => {
    event.preventDefault();
    setError(null);
    try {
      setResult(await api("/dashboard/api/v1/route", { method: "POST", body: { prompt } }));
    } catch (failure) {
      setResult(null);
      setError(String(failure.message ?? failure));
    }
  };
  return html`<form class="dry-run" id="dry-run" onSubmit=${run}>
    <h3>Dry run</h3>
    <textarea id="dry-run-prompt" rows="3" placeholder="A prompt to route (nothing is sent to a model)"
      value=${prompt} onInput=${(e) => setPrompt(e.target.value)}></textarea>
    <button type="submit" id="dry-run-button">Route it</button>
    <${ErrorLine} error=${error} />
    ${result ? html`<div id="dry-run-result">
      <p><span class="op">decision</span> <b id="dry-run-decision">${result.decision}</b>${" · "}<span class="op">model</span> <b id="dry-run-model">${result.model}</b></p>
      <p class="reason">${result.reason}</p>
      <pre>${JSON.stringify(result, null, 2)}</pre></div>` : null}
  </form>`;
}

export function ConfigView() {
  const [config, error] = usePoll(() => api("/dashboard/api/config"), 30000, []);
  return html`<section class="config">
    <h2>Decisions</h2><${ErrorLine} error=${error} />
    ${config ? html`<p class="muted">${`Strategy: ${config.decision_strategy}; routed aliases: ${config.aliases.join(", ")}; models: ${config.models.map((m) => m.name).join(", ")}.`}</p>
      <div id="config-tree">
        ${config.decisions.map((d) => html`<${Decision} d=${d} />`)}
        ${config.default ? html`<${Decision} d=${config.default} isDefault=${true} />` : null}
      </div>` : null}
    <${DryRun} />
  </section>`;
}
