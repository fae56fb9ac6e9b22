// Shared helpers: the JSON client (session cookie + CSRF header), formatting, a uPlot chart.
import { h } from "./vendor/preact.mjs";
import { useEffect, useRef, useState } from "./vendor/preact-hooks.mjs";
import htm from "./vendor/htm.mjs";
import uPlot from "./vendor/uPlot.mjs";

export const html = htm.bind(h);

// Every data call carries the header that makes the session cookie count (the CSRF guard).
export async function api(path, { method = "GET", body } = {}) {
  const headers = { "x-routeyard-dashboard": "1" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const answer = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await answer.json().catch(() => null);
  if (answer.status === 401) {
    window.location.reload(); // the session ended: the page becomes the login form
  }
  if (!answer.ok) {
    throw new Error(data?.error?.message ?? `HTTP ${answer.status}`);
  }
  return data;
}

export function query(params) {
  const found = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return found.length ? "?" + new URLSearchParams(found).toString() : "";
}

// Poll `load` every `everyMs` while mounted; [data, error].
export function usePoll(load, everyMs, deps) {
  const [state, setState] = useState([null, null]);
  useEffect(() => {
    let alive = true;
    let timer;
    const tick = async () => {
      try {
        const data = await load();
        if (alive) setState([data, null]);
      } catch (error) {
        if (alive) setState((old) => [old[0], String(error.message ?? error)]);
      }
      if (alive) timer = setTimeout(tick, everyMs);
    };
    tick();
    return () => { alive = false; clearTimeout(timer); };
  }, deps);
  return state;
}

export function usd(value) {
  if (value === null || value === undefined) return "–";
  const abs = Math.abs(value);
  if (abs === 0) return "$0";
  return "$" + (abs >= 1 ? value.toFixed(2) : value.toPrecision(3));
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(value >= 1 ? 1 : 3)} ms`;
}

export function pct(value) {
  if (value === null || value === undefined) return "–";
  return `${(value * 100).toFixed(1)}%`;
}

export function num(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

export function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

export const COLOURS = ["#2f6fdf", "#e8743b", "#19a979", "#ed4a7b", "#945ecf", "#13a4b4",
  "#525df4", "#bf399e", "#6c8893", "#ee6868"];

// A time-series chart: x in unix seconds, one line per entry of `lines` ({label, values}).
export function Chart({ x, lines, title, unit = "", height = 220 }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || !x.length) return undefined;
    const width = Math.max(320, (box.current.clientWidth || 660) - 20); // inside the padding
    const options = {
      title, width, height,
      series: [{}, ...lines.map((line, i) => ({
        label: line.label, stroke: COLOURS[i % COLOURS.length], width: 2,
        points: { show: x.length < 40 }, spanGaps: true,
        value: (u, v) => (v === null || v === undefined ? "–" : `${num(v, 4)}${unit}`),
      }))],
      axes: [{}, { size: 70, values: (u, ticks) => ticks.map((t) => `${num(t, 3)}${unit}`) }],
      scales: { x: { time: true } },
    };
    const plot = new uPlot(options, [x, ...lines.map((line) => line.values)], box.current);
    return () => plot.destroy();
  }, [JSON.stringify([x, lines, title, unit, height])]);
  return html`<div class="chart" ref=${box}>${x.length ? null : html`<p class="muted">No data in this window yet.</p>`}</div>`;
}

// The groups seen anywhere in a series answer, largest first.
export function groupNames(series) {
  const totals = new Map();
  for (const bucket of series?.data ?? []) {
    for (const [name, row] of Object.entries(bucket.groups)) {
      totals.set(name, (totals.get(name) ?? 0) + row.requests);
    }
  }
  return [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([name]) => name);
}

export function ErrorLine({ error }) {
  return error ? html`<p class="error" role="alert">${error}</p>` : null;
}
