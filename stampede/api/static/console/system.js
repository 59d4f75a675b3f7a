// System: persister, reconcile, Redis memory, requests and 5xx per second, workers.
import { bytes, el, fmt, table } from "./dom.js";

export function renderSystem(state) {
  const s = state.system;
  const p = s.persister || {};
  const memory = s.redis_maxmemory ? `${bytes(s.redis_used_memory)} of ${bytes(s.redis_maxmemory)}`
    : `${bytes(s.redis_used_memory)} (no maxmemory)`;
  const rows = [
    ["persister", el("span", { class: `badge ${p.state}`, text: p.state || "unknown" })],
    ["persister lag", `${fmt(s.persister_lag_s)} s`],
    ["events not yet persisted", fmt(s.persister_pending)],
    ["reconcile differences (units)", fmt(s.reconcile_differences)],
    ["Redis memory", memory],
    ["requests per second", fmt(s.requests_per_s)],
    ["5xx per second", fmt(s.errors_5xx_per_s)],
    ["restarts", Object.entries(s.restarts).map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
  ];
  const children = p.children ? table(["child", "state", "restarts"],
    Object.entries(p.children).map(([name, c]) => [name, c.state, c.restarts ?? 0])) : null;
  const now = state.at_ms;
  const workers = table(["worker (pid)", "up for", "open consoles", ""],
    s.workers.map((w) => [w.pid, `${Math.round((now - w.started_ms) / 1000)} s`,
      w.console_listeners, w.pid === s.worker_pid ? "serves this page's feed" : ""]));
  document.getElementById("system").replaceChildren(
    el("article", { class: "card", "data-testid": "system" },
      el("table", {}, el("tbody", {}, ...rows.map(([k, v]) =>
        el("tr", { "data-row": k }, el("th", { text: k }),
          el("td", {}, typeof v === "string" ? v : v))))),
      el("h3", { text: "gateway workers" }), workers,
      children ? el("h3", { text: "supervised children" }) : null, children));
}
