// Coupon drops: issued against budget (burn-down), per day, template and merchant, rollbacks.
import { RollingChart } from "./chart.js";
import { el, fmt, table } from "./dom.js";

const drops = new Map(); // campaign id -> {root, body, chart}

export function renderDrops(state) {
  const host = document.getElementById("drops");
  const withDrops = state.campaigns.filter((c) => c.coupons);
  if (!withDrops.length) {
    host.replaceChildren(el("p", { class: "muted", text: "No coupon drops." }));
    drops.clear();
    return;
  }
  if (!drops.size) host.replaceChildren();
  for (const c of withDrops) {
    let drop = drops.get(c.id);
    if (!drop) {
      const body = el("div");
      const chartHost = el("div", { class: "chart" });
      const root = el("article", { class: "card", "data-drop": c.id },
        el("h2", { text: `${c.name} (${c.id})` }), el("div", { class: "grid" }, body, chartHost));
      host.append(root);
      const chart = new RollingChart(chartHost, "budget burn-down (face value)",
        ["budget left", "issued"], { width: 420, height: 180 });
      drop = { root, body, chart };
      drops.set(c.id, drop);
    }
    const s = c.coupons;
    const t = s.totals;
    drop.chart.push(state.at_ms, { "budget left": s.budget_left, issued: t.face_value_issued });
    const totals = (rows) => Object.entries(rows).map(([k, v]) =>
      [k, v.issued, v.redeemed, v.rolled_back, v.discount_granted, v.expired]);
    const head = ["", "issued", "redeemed", "rolled back", "discount granted", "expired"];
    drop.body.replaceChildren(
      el("div", { class: "facts" },
        ...[["budget", s.budget ?? "none"], ["budget left", s.budget_left ?? "—"],
          ["issued", t.issued], ["face value issued", t.face_value_issued],
          ["redeemed", t.redeemed], ["rollbacks", t.rolled_back],
          ["redemption rate", t.redemption_rate]].map(([k, v]) =>
          el("span", {}, `${k} `, el("b", { text: fmt(v) })))),
      el("h3", { text: "per day" }), table(head, totals(s.days)),
      el("h3", { text: "per template" }), table(head, totals(s.templates)),
      el("h3", { text: "redemptions per merchant" }), table(head, totals(s.merchants)));
  }
}
