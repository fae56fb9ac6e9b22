// Feedback quality (per model, per decision, and each decision's cost/quality points) and
// the signal families' latencies.
import { COLOURS, ErrorLine, api, html, ms, num, query, usd, usePoll } from "./lib.js";
import { useStats } from "./views.js";

const feedbackColumns = (row) => html`<td class="count">${row.feedback.count}</td>
  <td class="mean">${num(row.feedback.mean, 3)}</td><td>${row.requests}</td>`;

function FeedbackTable({ id, stats }) {
  const key = stats?.group_by;
  return html`<table class="rows" id=${id}>
    <thead><tr><th>${key}</th><th>Feedback</th><th>Mean score</th><th>Requests</th></tr></thead>
    <tbody>${(stats?.data ?? []).map((row) => html`<tr data-group=${row[key]}>
      <td class="name">${row[key] ?? "–"}</td>${feedbackColumns(row)}</tr>`)}</tbody></table>`;
}

// (mean cost per request, mean feedback) per model of one decision, as an SVG scatter.
function Scatter({ decision }) {
  const points = decision.models.filter((p) => p.feedback_mean !== null && p.mean_cost_usd !== null);
  const W = 560, H = 240, PAD = 48, RIGHT = 190;
  if (!points.length) {
    return html`<p class="muted">No feedback yet for ${decision.decision}'s models.</p>`;
  }
  // Cost from 0 to a little past the dearest point, so one point is not pinned to an edge.
  const top = Math.max(...points.map((p) => p.mean_cost_usd)) * 1.15 || 1e-9;
  const x = (c) => PAD + (c / top) * (W - PAD - RIGHT);
  const y = (q) => H - PAD - q * (H - 2 * PAD);
  return html`<svg class="scatter" viewBox="0 0 ${W} ${H}" width=${W} height=${H}
      data-decision=${decision.decision}>
    <line x1=${PAD} y1=${H - PAD} x2=${W - RIGHT} y2=${H - PAD} class="axis" />
    <text x=${PAD} y=${H - PAD + 14} class="tick" text-anchor="middle">$0</text>
    <text x=${x(top)} y=${H - PAD + 14} class="tick" text-anchor="middle">${usd(top)}</text>
    <line x1=${PAD} y1=${PAD} x2=${PAD} y2=${H - PAD} class="axis" />
    <text x=${(W - RIGHT) / 2} y=${H - 12} class="axis-label">mean cost per request</text>
    <text x=${12} y=${PAD - 14} class="axis-label">quality (mean feedback)</text>
    <text x=${PAD - 6} y=${y(1) + 4} class="tick" text-anchor="end">1</text>
    <text x=${PAD - 6} y=${y(0) + 4} class="tick" text-anchor="end">0</text>
    ${points.map((p, i) => html`<g class="point" data-model=${p.model}>
      <circle cx=${x(p.mean_cost_usd)} cy=${y(p.feedback_mean)} r=${6} fill=${COLOURS[i % COLOURS.length]} />
      <text x=${x(p.mean_cost_usd) + 9} y=${y(p.feedback_mean) + 4} class="point-label">
        ${p.model} (${usd(p.mean_cost_usd)}, ${num(p.feedback_mean, 2)}, n=${p.feedback_count})</text></g>`)}
  </svg>`;
}

export function QualityView({ span }) {
  const [byModel, error] = useStats(span, "model");
  const [byDecision] = useStats(span, "decision");
  const [points] = usePoll(() => api("/dashboard/api/quality" + query({
    since: (Date.now() / 1000 - span).toFixed(3) })), 5000, [span]);
  return html`<section>
    <h2>Feedback quality</h2><${ErrorLine} error=${error} />
    <div class="two">
      <div><h3>Per model</h3><${FeedbackTable} id="quality-model-table" stats=${byModel} /></div>
      <div><h3>Per decision</h3><${FeedbackTable} id="quality-decision-table" stats=${byDecision} /></div>
    </div>
    <h3>Cost and quality of each decision's models</h3>
    <p class="muted">One point per model: its mean cost per request in this window, and the mean
      of the feedback logged for its answers (<code>POST /v1/feedback</code>).</p>
    <div class="scatters" id="quality-points">${(points?.data ?? []).map((d) => html`
      <div class="scatter-box"><h4>${d.decision}</h4><${Scatter} decision=${d} /></div>`)}</div>
  </section>`;
}

function LatencyTable({ id, rows, label }) {
  const top = Math.max(1e-9, ...rows.map((r) => r.p95_ms ?? 0));
  return html`<table class="rows" id=${id}>
    <thead><tr><th>${label}</th><th>Count</th><th>Mean</th><th>p50</th><th>p95</th><th>p99</th><th></th></tr></thead>
    <tbody>${rows.map((r) => html`<tr data-group=${r[label]}>
      <td class="name">${r[label]}</td><td>${r.count}</td><td>${ms(r.mean_ms)}</td>
      <td>${ms(r.p50_ms)}</td><td>${ms(r.p95_ms)}</td><td>${ms(r.p99_ms)}</td>
      <td class="bar-cell"><div class="bar" style=${{ width: `${(100 * (r.p95_ms ?? 0)) / top}%` }}></div></td>
    </tr>`)}
    ${rows.length ? null : html`<tr><td class="muted" colspan="7">Nothing measured yet.</td></tr>`}
    </tbody></table>`;
}

export function SignalsView() {
  const [data, error] = usePoll(() => api("/dashboard/api/signals"), 5000, []);
  return html`<section>
    <h2>Signal latencies</h2><${ErrorLine} error=${error} />
    <p class="muted">From <code>routeyard_signal_duration_seconds</code>${` of ${data?.scope ?? "this process"} (percentiles interpolated within the histogram's buckets).`}</p>
    <${LatencyTable} id="signals-table" rows=${data?.signals ?? []} label="family" />
    <h3>Time to first token per model</h3>
    <${LatencyTable} id="ttft-table" rows=${data?.ttft ?? []} label="model" />
    <h3>Time per output token per model</h3>
    <${LatencyTable} id="tpot-table" rows=${data?.time_per_output_token ?? []} label="model" />
  </section>`;
}
