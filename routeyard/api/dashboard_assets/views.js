// The aggregate views: model mix, cost and savings, latency, errors and failover, cache.
// Each reads /v1/stats (through /dashboard/api/v1/) and the dashboard's own series endpoint.
import { Chart, ErrorLine, api, groupNames, html, ms, num, pct, query, usd, usePoll } from "./lib.js";

const EVERY_MS = 5000;

function since(span) {
  return (Date.now() / 1000 - span).toFixed(3);
}

export function useStats(span, groupBy) {
  return usePoll(() => api("/dashboard/api/v1/stats" + query({ since: since(span), group_by: groupBy })),
    EVERY_MS, [span, groupBy]);
}

export function useSeries(span, groupBy = "model") {
  return usePoll(() => api("/dashboard/api/series" + query({ since: since(span), buckets: 30, group_by: groupBy })),
    EVERY_MS, [span, groupBy]);
}

const xOf = (series) => (series?.data ?? []).map((b) => b.start);
// Sums are 0 in an empty bucket; rates and percentiles have no value there (a gap).
const totalLine = (series, label, pick, sum = false) => ({
  label, values: (series?.data ?? []).map((b) => (b.total.requests ? pick(b.total, b) : sum ? 0 : null)),
});
const groupLines = (series, pick) => groupNames(series).map((name) => ({
  label: name, values: (series?.data ?? []).map((b) => (b.groups[name] ? pick(b.groups[name]) : 0)),
}));

function Summary({ stats }) {
  const t = stats?.total;
  if (!t) return null;
  const card = (id, label, text, value) => html`
    <div class="card"><div class="label">${label}</div>
      <div class="value" id=${id} data-value=${value}>${text}</div></div>`;
  return html`<div class="cards">
    ${card("total-requests", "Requests", String(t.requests), t.requests)}
    ${card("total-cost", "Cost", usd(t.cost_usd), t.cost_usd)}
    ${card("total-savings", "Saved", usd(t.savings_usd), t.savings_usd)}
    ${card("total-error-rate", "Error rate", pct(t.error_rate), t.error_rate ?? "")}
    ${card("total-cache", "Cache hit rate", pct(t.cache.hit_rate), t.cache.hit_rate ?? "")}
    ${card("total-latency", "Latency p50 / p95", `${ms(t.latency_ms.p50)} / ${ms(t.latency_ms.p95)}`, t.latency_ms.p50 ?? "")}
    ${card("total-feedback", "Mean feedback", num(t.feedback.mean, 3), t.feedback.mean ?? "")}
  </div>`;
}

// One row per group of a /v1/stats answer, the columns given as [title, class, row → text].
function GroupTable({ id, stats, columns }) {
  const rows = stats?.data ?? [];
  const key = stats?.group_by;
  return html`<table class="rows" id=${id}>
    <thead><tr><th>${key}</th>${columns.map(([title]) => html`<th>${title}</th>`)}</tr></thead>
    <tbody>${rows.map((row) => html`<tr data-group=${row[key]}><td class="name">${row[key] ?? "–"}</td>
      ${columns.map(([, cls, cell]) => html`<td class=${cls}>${cell(row)}</td>`)}</tr>`)}
      ${rows.length ? null : html`<tr><td class="muted" colspan=${columns.length + 1}>No requests in this window.</td></tr>`}
    </tbody></table>`;
}

export function TrafficView({ span }) {
  const [total, error] = useStats(span, "model");
  const [series] = useSeries(span, "model");
  const requests = total?.total?.requests ?? 0;
  return html`<section>
    <h2>Model mix</h2><${ErrorLine} error=${error} />
    <${Summary} stats=${total} />
    <${Chart} title="Requests per model" x=${xOf(series)} lines=${groupLines(series, (r) => r.requests)} />
    <${GroupTable} id="mix-table" stats=${total} columns=${[
      ["Requests", "requests", (r) => r.requests],
      ["Share", "share", (r) => pct(requests ? r.requests / requests : null)],
      ["Cost", "cost", (r) => usd(r.cost_usd)],
      ["Tokens in / out", "tokens", (r) => `${r.prompt_tokens} / ${r.completion_tokens}`],
    ]} />
  </section>`;
}

export function CostView({ span }) {
  const [byDecision, error] = useStats(span, "decision");
  const [series] = useSeries(span, "model");
  return html`<section>
    <h2>Cost and savings</h2><${ErrorLine} error=${error} />
    <${Summary} stats=${byDecision} />
    <${Chart} title="Cost and savings per bucket ($)" x=${xOf(series)} lines=${[
      totalLine(series, "cost", (t) => t.cost_usd, true),
      totalLine(series, "baseline", (t) => t.baseline_cost_usd, true),
      totalLine(series, "saved", (t) => t.savings_usd, true)]} />
    <${Chart} title="Cost per model ($)" x=${xOf(series)} lines=${groupLines(series, (r) => r.cost_usd)} />
    <p class="muted">Baseline: ${byDecision?.savings_baseline?.reference_model
      ? `every token on ${byDecision.savings_baseline.reference_model}`
      : "each request on the dearest candidate of its decision"}.</p>
    <${GroupTable} id="cost-table" stats=${byDecision} columns=${[
      ["Requests", "requests", (r) => r.requests],
      ["Cost", "cost", (r) => usd(r.cost_usd)],
      ["Baseline", "baseline", (r) => usd(r.baseline_cost_usd)],
      ["Saved", "saved", (r) => usd(r.savings_usd)],
    ]} />
  </section>`;
}

export function LatencyView({ span }) {
  const [byModel, error] = useStats(span, "model");
  const [series] = useSeries(span, "model");
  return html`<section>
    <h2>Latency and time to first token</h2><${ErrorLine} error=${error} />
    <${Chart} title="Latency percentiles (ms)" x=${xOf(series)} lines=${[
      totalLine(series, "latency p50", (t) => t.latency_ms.p50),
      totalLine(series, "latency p95", (t) => t.latency_ms.p95),
      totalLine(series, "TTFT p50", (t) => t.ttft_ms.p50),
      totalLine(series, "TTFT p95", (t) => t.ttft_ms.p95)]} />
    <${GroupTable} id="latency-table" stats=${byModel} columns=${[
      ["Requests", "requests", (r) => r.requests],
      ["Mean", "mean", (r) => ms(r.latency_ms.mean)],
      ["p50", "p50", (r) => ms(r.latency_ms.p50)],
      ["p95", "p95", (r) => ms(r.latency_ms.p95)],
      ["Streams", "streams", (r) => r.ttft_ms.count],
      ["TTFT p50", "ttft50", (r) => ms(r.ttft_ms.p50)],
      ["TTFT p95", "ttft95", (r) => ms(r.ttft_ms.p95)],
    ]} />
  </section>`;
}

export function ErrorsView({ span }) {
  const [byModel, error] = useStats(span, "model");
  const [byDecision] = useStats(span, "decision");
  const [series] = useSeries(span, "model");
  const attempts = (series?.data ?? []).map((b) => b.attempts);
  const failover = attempts.map((a) => (a.requests ? a.failed_over / a.requests : null));
  const counted = attempts.reduce((s, a) => ({ requests: s.requests + a.requests,
    failed_over: s.failed_over + a.failed_over, other: s.other + a.to_other_model }),
  { requests: 0, failed_over: 0, other: 0 });
  const columns = [
    ["Requests", "requests", (r) => r.requests],
    ["Errors", "errors", (r) => r.errors],
    ["Error rate", "rate", (r) => pct(r.error_rate)],
  ];
  return html`<section>
    <h2>Errors and failover</h2><${ErrorLine} error=${error} />
    <${Chart} title="Error and failover rates" x=${xOf(series)} lines=${[
      totalLine(series, "error rate", (t) => t.error_rate),
      { label: "failover rate", values: failover }]} />
    <p id="failover-summary">${`Failover: ${counted.failed_over} of ${counted.requests} requests had a failed attempt before their answer (${pct(counted.requests ? counted.failed_over / counted.requests : null)}); ${counted.other} were answered by another model than the first tried.`}
      ${series && !series.attempts_complete ? html`<span class="muted">${" (counted over the newest records only)"}</span>` : null}</p>
    <h3>By model</h3><${GroupTable} id="errors-model-table" stats=${byModel} columns=${columns} />
    <h3>By decision</h3><${GroupTable} id="errors-decision-table" stats=${byDecision} columns=${columns} />
  </section>`;
}

export function CacheView({ span }) {
  const [byDecision, error] = useStats(span, "decision");
  const [series] = useSeries(span, "decision");
  return html`<section>
    <h2>Semantic cache</h2><${ErrorLine} error=${error} />
    <${Chart} title="Cache hit rate" x=${xOf(series)} lines=${[
      totalLine(series, "hit rate", (t) => t.cache.hit_rate)]} />
    <${GroupTable} id="cache-table" stats=${byDecision} columns=${[
      ["Requests", "requests", (r) => r.requests],
      ["Cache ran", "ran", (r) => r.cache.ran],
      ["Hits", "hits", (r) => r.cache.hits],
      ["Hit rate", "rate", (r) => pct(r.cache.hit_rate)],
    ]} />
    <p class="muted">Requests count here when a decision's <code>semantic_cache</code> plugin ran.</p>
  </section>`;
}
