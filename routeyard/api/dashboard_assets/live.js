// The live stream of decisions (polled every second) and one request's detail.
import { useEffect, useRef, useState } from "./vendor/preact-hooks.mjs";
import { ErrorLine, api, clock, html, ms, num, usd } from "./lib.js";

const KEEP = 300;

export function LiveView() {
  const [records, setRecords] = useState([]);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(null);
  const known = useRef(new Map());
  const fresh = useRef(new Set());
  useEffect(() => {
    let alive = true;
    let timer;
    let first = true;
    const tick = async () => {
      try {
        // The newest page, merged by id: records written late (long streams) still show.
        const page = await api("/dashboard/api/v1/decisions?limit=100");
        const seen = known.current;
        fresh.current = new Set();
        for (const record of page.data) {
          if (!seen.has(record.request_id) && !first) fresh.current.add(record.request_id);
          seen.set(record.request_id, record);
        }
        first = false;
        const sorted = [...seen.values()].sort((a, b) => b.time - a.time
          || (a.request_id < b.request_id ? 1 : -1)).slice(0, KEEP);
        known.current = new Map(sorted.map((r) => [r.request_id, r]));
        if (alive) { setRecords(sorted); setError(null); }
      } catch (failure) {
        if (alive) setError(String(failure.message ?? failure));
      }
      if (alive) timer = setTimeout(tick, 1000);
    };
    tick();
    return () => { alive = false; clearTimeout(timer); };
  }, []);
  return html`
    <section class="live">
      <div class="stream">
        <h2>Live decisions <span class="muted" id="live-count">${records.length}</span></h2>
        <${ErrorLine} error=${error} />
        <table id="live-table" class="rows">
          <thead><tr><th>Time</th><th>Surface</th><th>Decision</th><th>Model</th>
            <th>Status</th><th>Latency</th><th>Tokens</th><th>Cost</th><th>Key</th></tr></thead>
          <tbody>${records.map((r) => html`
            <tr key=${r.request_id} data-request-id=${r.request_id}
              class=${[selected === r.request_id ? "selected" : "",
                fresh.current.has(r.request_id) ? "fresh" : "",
                r.status === "ok" || r.status === "cache_hit" ? "" : "bad"].join(" ")}
              onClick=${() => setSelected(r.request_id)}>
              <td>${clock(r.time)}</td><td>${r.surface ?? "–"}</td>
              <td>${r.decision ?? "–"}</td><td>${r.model ?? "–"}</td>
              <td>${r.status}</td><td>${ms(r.latency_ms)}</td>
              <td>${r.prompt_tokens} + ${r.completion_tokens}</td>
              <td>${usd(r.cost_usd)}</td><td>${r.key_id ?? "–"}</td>
            </tr>`)}
          </tbody>
        </table>
      </div>
      ${selected ? html`<${Detail} id=${selected} onClose=${() => setSelected(null)} />` : null}
    </section>`;
}

function Detail({ id, onClose }) {
  const [record, setRecord] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setRecord(null);
    api(`/dashboard/api/v1/decisions/${encodeURIComponent(id)}`)
      .then(setRecord, (failure) => setError(String(failure.message ?? failure)));
  }, [id]);
  if (error) return html`<aside class="detail"><${ErrorLine} error=${error} /></aside>`;
  if (!record) return html`<aside class="detail"><p class="muted">Loading ${id}…</p></aside>`;
  const detail = record.detail ?? {};
  const selection = detail.selection ?? {};
  const scores = selection.scores ?? {};
  const skipped = skipReasons(detail.skipped);
  const candidates = detail.candidates ?? [];
  return html`
    <aside class="detail" id="detail" data-request-id=${record.request_id}>
      <button class="close" onClick=${onClose}>×</button>
      <h2>${record.request_id}</h2>
      <dl class="facts">
        <dt>Time</dt><dd>${new Date(record.time * 1000).toISOString()}</dd>
        <dt>Surface</dt><dd>${record.surface ?? "–"}${record.stream ? " (stream)" : ""}</dd>
        <dt>Caller</dt><dd>${record.key_id ?? "–"} · tenant ${record.tenant ?? "–"}</dd>
        <dt>Decision</dt><dd id="detail-decision">${record.decision ?? "–"}</dd>
        <dt>Rule path</dt><dd id="detail-rule">${selection.rule ?? "–"}</dd>
        <dt>Algorithm</dt><dd>${selection.algorithm ?? "–"}${selection.lambda !== null && selection.lambda !== undefined ? ` (λ=${selection.lambda})` : ""}</dd>
        <dt>Model</dt><dd id="detail-model">${record.model ?? "–"} at ${record.endpoint ?? "–"} · p=${num(selection.probability, 3)}</dd>
        <dt>Status</dt><dd>${record.status}${record.cache ? ` · cache ${record.cache}` : ""}</dd>
        <dt>Latency</dt><dd>${ms(record.latency_ms)}${record.ttft_ms !== null ? ` · TTFT ${ms(record.ttft_ms)}` : ""}</dd>
        <dt>Tokens</dt><dd>${record.prompt_tokens} in · ${record.completion_tokens} out</dd>
        <dt>Cost</dt><dd id="detail-cost">${usd(record.cost_usd)} (dearest candidate: ${usd(record.dearest_cost_usd)})</dd>
        <dt>Feedback</dt><dd>${record.feedback === null ? "none" : num(record.feedback, 3)}</dd>
        <dt>Plugins</dt><dd>${(detail.plugins ?? []).join(", ") || "none"}</dd>
      </dl>
      <h3>Reason</h3><p class="reason" id="detail-reason">${detail.reason ?? "–"}</p>
      <h3>Signals</h3>
      <table class="rows" id="detail-signals"><tbody>
        ${Object.entries(detail.signals ?? {}).map(([name, conf]) => html`
          <tr><td>${name}</td><td>${num(conf, 3)}</td></tr>`)}
        ${Object.keys(detail.signals ?? {}).length ? null : html`<tr><td class="muted">none matched</td></tr>`}
      </tbody></table>
      <h3>Candidates</h3>
      <table class="rows" id="detail-candidates">
        <thead><tr><th>Model</th><th>Score</th><th>Skipped because</th></tr></thead>
        <tbody>${[...new Set([...candidates, ...Object.keys(skipped)])].map((model) => html`
          <tr class=${model === record.model ? "chosen" : ""}><td>${model}</td>
            <td>${scores[model] === undefined ? "–" : num(scores[model], 4)}</td>
            <td>${skipped[model] ?? ""}</td></tr>`)}
        </tbody>
      </table>
      <h3>Attempts</h3>
      <table class="rows" id="detail-attempts">
        <thead><tr><th>#</th><th>Model</th><th>Endpoint</th><th>Outcome</th><th>Error</th></tr></thead>
        <tbody>${(detail.attempts ?? []).map((a, i) => html`
          <tr class=${a.outcome === "ok" ? "" : "bad"}><td>${i + 1}</td><td>${a.model}</td>
            <td>${a.endpoint}</td><td>${a.outcome}</td><td>${a.error ?? ""}</td></tr>`)}
        </tbody>
      </table>
      ${selection.why ? html`<h3>Why</h3><p class="reason">${selection.why}</p>` : null}
    </aside>`;
}

// `skipped` is a list of {model, reason} (or a mapping); either way, model → reason.
function skipReasons(skipped) {
  if (!skipped) return {};
  if (Array.isArray(skipped)) {
    return Object.fromEntries(skipped.map((s) => (typeof s === "object"
      ? [s.model ?? s.name ?? JSON.stringify(s), s.reason ?? s.why ?? ""] : [String(s), ""])));
  }
  return Object.fromEntries(Object.entries(skipped).map(([k, v]) => [k, String(v)]));
}
