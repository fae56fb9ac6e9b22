// The cost/quality frontier per decision (`routeyard advise` on the window's log): each model's
// estimated cost and quality with their 95% intervals, the Pareto frontier as a line, and the
// suggestions, from /dashboard/api/frontier.
import { useEffect, useRef, useState } from "./vendor/preact-hooks.mjs";
import uPlot from "./vendor/uPlot.mjs";
import { COLOURS, ErrorLine, api, html, num, query, usd, usePoll } from "./lib.js";

// The server caches an answer for 60 s: polling faster would only re-read the cache.
const EVERY_MS = 20000;
const FRONTIER = "#1d2430";

// "$0.001 [$0.0009, $0.0011]" or "0.812 [0.80, 0.83]".
function interval(entry, money) {
  if (!entry) return "–";
  const show = money ? usd : (v) => num(v, 3);
  return `${show(entry.value)} [${show(entry.low)}, ${show(entry.high)}]`;
}

const estimated = (decision) => decision.models.filter((m) => m.status === "estimated");

// The intervals as error bars and each model's name beside its point, drawn on uPlot's canvas.
function errorBars(models) {
  return (u) => {
    const ctx = u.ctx;
    const r = uPlot.pxRatio;
    ctx.save();
    ctx.lineWidth = 1.5 * r;
    ctx.font = `${12 * r}px system-ui, sans-serif`;
    models.forEach((m, i) => {
      const x = u.valToPos(m.cost.value, "x", true);
      const y = u.valToPos(m.quality.value, "y", true);
      ctx.strokeStyle = ctx.fillStyle = COLOURS[i % COLOURS.length];
      ctx.beginPath();
      ctx.moveTo(u.valToPos(m.cost.low, "x", true), y);
      ctx.lineTo(u.valToPos(m.cost.high, "x", true), y);
      ctx.moveTo(x, u.valToPos(m.quality.low, "y", true));
      ctx.lineTo(x, u.valToPos(m.quality.high, "y", true));
      ctx.stroke();
      ctx.fillText(m.model, x + 8 * r, y - 6 * r);
    });
    ctx.restore();
  };
}

// One uPlot: x is the cost per request (no time axis), one point series per model, and the
// frontier models joined by a line, cheapest first.
function FrontierChart({ decision }) {
  const box = useRef(null);
  const models = estimated(decision);
  useEffect(() => {
    if (!box.current || !models.length) return undefined;
    const order = [...models].sort((a, b) => a.cost.value - b.cost.value);
    const x = order.map((m) => m.cost.value);
    const point = (m) => order.map((o) => (o === m ? m.quality.value : null));
    const onLine = order.map((m) => (m.on_frontier ? m.quality.value : null));
    const dearest = Math.max(...models.map((m) => m.cost.high));
    const topCost = dearest * 1.15 || 1e-9;
    const bottomCost = Math.min(...models.map((m) => m.cost.low));
    // Costs more than 20x apart (a cheap model beside a dear one): a log axis, so the
    // cheap one is not pinned to the left edge. Not with a free model (log 0).
    const logX = bottomCost > 0 && dearest / bottomCost > 20;
    const xScale = logX ? { time: false, distr: 3, log: 10, range: [bottomCost / 2, topCost * 2] }
      : { time: false, range: [0, topCost] };
    const lowQ = Math.max(0, Math.min(...models.map((m) => m.quality.low)) - 0.05);
    const highQ = Math.min(1, Math.max(...models.map((m) => m.quality.high)) + 0.05);
    const width = Math.max(360, (box.current.clientWidth || 660) - 20);
    const plot = new uPlot({
      width, height: 320,
      scales: { x: xScale, y: { range: [lowQ, highQ] } },
      series: [
        { label: "cost per request", value: (u, v) => usd(v) },
        ...models.map((m, i) => ({
          label: m.model, stroke: COLOURS[i % COLOURS.length], width: 0, paths: () => null,
          points: { show: true, size: 11, fill: COLOURS[i % COLOURS.length] },
          value: (u, v) => (v === null || v === undefined ? "–" : num(v, 3)),
        })),
        { label: "frontier", stroke: FRONTIER, width: 1.5, dash: [6, 4], spanGaps: true,
          points: { show: false }, value: (u, v) => (v === null || v === undefined ? "–" : num(v, 3)) },
      ],
      axes: [
        { label: `estimated cost per request${logX ? " (log scale)" : ""}`,
          // A log axis leaves its minor ticks unlabelled (null).
          values: (u, ticks) => ticks.map((t) => (t === null ? "" : usd(t))) },
        { label: "estimated quality (feedback)", size: 60, values: (u, ticks) => ticks.map((t) => num(t, 2)) },
      ],
      hooks: { draw: [errorBars(models)] },
    }, [x, ...models.map(point), onLine], box.current);
    return () => plot.destroy();
  }, [JSON.stringify(decision)]);
  return html`<div class="chart" id="frontier-chart" ref=${box}
    data-decision=${decision.decision}></div>`;
}

function ModelTable({ decision }) {
  return html`<table class="rows" id="frontier-table">
    <thead><tr><th>Model</th><th>Requests</th><th>Feedback</th><th>Estimator</th>
      <th>Cost per request (95%)</th><th>Quality (95%)</th><th>Frontier</th></tr></thead>
    <tbody>${decision.models.map((m) => html`<tr data-model=${m.model}
        class=${m.on_frontier ? "chosen" : ""}>
      <td class="name">${m.model}</td><td class="requests">${m.requests}</td>
      <td class="feedback">${m.feedback}</td><td>${m.estimator}</td>
      ${m.status === "estimated"
        ? html`<td class="cost">${interval(m.cost, true)}</td>
          <td class="quality">${interval(m.quality, false)}</td>
          <td class="frontier">${m.on_frontier ? "on the frontier" : "–"}</td>`
        : html`<td class="muted" colspan="3">${`not enough data (${m.feedback} of ${decision.needs} feedback)`}</td>`}
    </tr>`)}</tbody></table>`;
}

function Suggestions({ decision, settings }) {
  if (!decision.suggestions.length) {
    const keep = settings ? `${Math.round(settings.min_keep * 100)}%` : "the threshold";
    return html`<p class="muted" id="frontier-no-suggestion">No suggestion: no cheaper model's
      kept quality is supported at ${keep} by its interval.</p>`;
  }
  return html`<ul class="suggestions" id="frontier-suggestions">${decision.suggestions.map((s) => html`
    <li data-model=${s.model} data-baseline=${s.baseline}>${s.text}
      <span class="muted"> (baseline: the ${s.baseline_role} model; ${s.estimator})</span></li>`)}
  </ul>`;
}

function Provenance({ data }) {
  const age = data.age_s < 1 ? "just now" : `${Math.round(data.age_s)} s ago`;
  const parts = [`From ${data.records} routed requests, ${data.feedback} with feedback; computed`
    + ` ${age} in ${num(data.compute_s, 1)} s${data.stale ? " (refreshing)" : ""}.`];
  if (!data.complete) parts.push("Only the newest records of the window were read.");
  if (data.settings) {
    parts.push(`${Math.round(data.settings.confidence * 100)}% ${data.settings.interval} intervals;`
      + ` a model is estimated from ${data.needs} feedback.`);
  }
  return html`<p class="muted" id="frontier-provenance">${parts.join(" ")}</p>`;
}

export function FrontierView({ span }) {
  const [data, error] = usePoll(() => api("/dashboard/api/frontier" + query({ since: `${span}s` })),
    EVERY_MS, [span]);
  const [chosen, setChosen] = useState(null);
  const decisions = data?.data ?? [];
  const decision = decisions.find((d) => d.decision === chosen)
    ?? decisions.find((d) => d.status === "ready") ?? decisions[0];
  return html`<section>
    <h2>Cost and quality frontier</h2><${ErrorLine} error=${error} />
    <p class="muted">What <code>routeyard advise</code> says about this window: each model's
      estimated cost per request and quality (mean feedback) with 95% bootstrap intervals, the
      models no other beats on both (the dashed line), and the cheaper models that would keep
      enough quality.</p>
    ${data === null ? html`<p class="muted">Computing…</p>` : html`
      <${Provenance} data=${data} />
      ${data.status === "waiting" && !decisions.length
        ? html`<p class="waiting" id="frontier-state">${data.message}</p>` : null}
      ${decisions.length ? html`<label>Decision <select id="frontier-decision"
          value=${decision?.decision} onChange=${(e) => setChosen(e.target.value)}>
          ${decisions.map((d) => html`<option value=${d.decision}>${`${d.decision} (${d.requests} requests)`}</option>`)}</select></label>` : null}
      ${decision ? html`<div class="frontier" data-decision=${decision.decision}>
        ${decision.status === "waiting"
          ? html`<p class="waiting" id="frontier-state">${decision.message}</p>`
          : html`<${FrontierChart} decision=${decision} />`}
        <${ModelTable} decision=${decision} />
        <h3>Suggestions</h3>
        <${Suggestions} decision=${decision} settings=${data.settings} />
      </div>` : null}`}
  </section>`;
}
