// Campaign cards: state, window, SKUs, rates by outcome (chart), queues, and the controls.
import { call, enc } from "./api.js";
import { RollingChart } from "./chart.js";
import { confirmEffect, el, fmt, table, time, toast } from "./dom.js";

const CHARTED = ["held", "sold_out", "limit_exceeded", "throttled", "blocked",
  "challenge_required", "admission_required", "expired"];
const cards = new Map(); // campaign id -> {root, parts, chart}

export function renderCampaigns(state, canAct) {
  const host = document.getElementById("campaigns");
  document.getElementById("no-campaigns").textContent =
    state.campaigns.length ? "" : "No campaigns yet (PUT /admin/v1/campaigns/{id} makes one).";
  const seen = new Set();
  for (const c of state.campaigns) {
    seen.add(c.id);
    let card = cards.get(c.id);
    if (!card) {
      card = buildCard(c);
      cards.set(c.id, card);
      host.append(card.root);
    }
    update(card, c, state.at_ms, canAct);
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) { card.root.remove(); cards.delete(id); }
  }
}

function buildCard(c) {
  const parts = {
    state: el("span", { class: "badge", "data-testid": "state" }),
    window: el("span", { class: "muted" }),
    skus: el("div", { "data-testid": "skus" }),
    facts: el("div", { class: "facts" }),
    rates: el("div", { class: "facts", "data-testid": "rates" }),
    chart: el("div", { class: "chart" }),
    // A sharded campaign: its counters are the shards' sums; each shard on demand.
    shards: el("details", { class: "shards", "data-testid": "shards", hidden: true },
      el("summary", {}), el("div", {})),
  };
  const root = el("article", { class: "card", id: `campaign-${c.id}`, "data-campaign": c.id },
    el("div", { class: "card-head" }, el("h2", { text: `${c.name} (${c.id})` }), parts.state,
      parts.window),
    el("div", { class: "grid" },
      el("div", {}, parts.skus, parts.facts, parts.rates, parts.shards), parts.chart),
    controls(c, parts));
  const chart = new RollingChart(parts.chart, "claims per second by outcome", CHARTED,
    { width: 480, height: 200 });
  return { root, parts, chart, id: c.id };
}

function update(card, c, atMs, canAct) {
  const p = card.parts;
  p.state.textContent = c.state;
  p.state.className = `badge ${c.state}`;
  p.window.textContent = `${time(c.opens_ms)} → ${time(c.closes_ms)} · hold ${c.hold_ttl_s} s · `
    + `per user ${c.per_user ?? "no limit"} · at most ${c.max_per_claim} a claim`;
  p.skus.replaceChildren(table(
    ["SKU", "released", "available", "held", "sold", "pending waves", "next wave", "per user"],
    c.skus.map((s) => [s.sku, s.released, s.available, s.held, s.sold,
      s.pending_waves ? `${s.pending_waves} (${s.pending_units} units)` : 0,
      s.next_wave_ms ? time(s.next_wave_ms) : "—", s.per_user ?? "—"])));
  showShards(p.shards, c.shards);
  const room = c.waiting_room;
  const facts = [
    c.coupons ? ["coupon claims", c.counts.coupon_claims ?? 0] : ["claims ok", c.counts.held ?? 0],
    ["sold out", c.counts.sold_out ?? 0],
    ["waitlist", c.waitlist], ["offers outstanding", c.offers_outstanding],
    ["hold expiries", c.counts.expired ?? 0],
    ["waiting room", room ? `${room.tickets} tickets · ${room.served} served · ${room.active} `
      + `admitted · ${room.rate_per_s}/s${room.paused ? " · PAUSED" : ""}` : "off"],
    ["throttle", c.throttle ? throttleText(c.throttle) : "off"],
  ];
  p.facts.replaceChildren(...facts.map(([k, v]) =>
    el("span", { "data-fact": k }, `${k} `, el("b", { text: fmt(v) }))));
  p.rates.replaceChildren(...CHARTED.filter((k) => c.rates[k]).map((k) =>
    el("span", {}, `${k} `, el("b", { text: `${fmt(c.rates[k])}/s` }))));
  card.chart.push(atMs, c.rates);
  const skuSelect = card.root.querySelector("[name=sku]");
  const names = c.skus.map((s) => s.sku).join(",");
  if (skuSelect.dataset.names !== names) {
    skuSelect.replaceChildren(...c.skus.map((s) => el("option", { value: s.sku, text: s.sku })));
    skuSelect.dataset.names = names;
  }
  card.root.querySelectorAll(".controls button, .controls input, .controls select")
    .forEach((node) => { node.disabled = !canAct; });
  card.root.querySelector("[data-action=pause]").hidden = c.state === "paused";
  card.root.querySelector("[data-action=resume]").hidden = c.state !== "paused";
  // Only a campaign defined with a waiting room has one to tune.
  card.root.querySelector("[data-control=room]").hidden = !c.waiting_room;
  card.root.querySelector("[data-action=pause-queue]").hidden = !!c.waiting_room?.paused;
  card.root.querySelector("[data-action=resume-queue]").hidden = !c.waiting_room?.paused;
}

function showShards(details, shards) {
  details.hidden = !shards;
  if (!shards) return;
  details.querySelector("summary").textContent =
    `split across ${shards.length} shards: per-shard counters`;
  details.querySelector("div").replaceChildren(table(
    ["shard", "key set", "SKU", "released", "available", "held", "sold", "claims ok"],
    shards.flatMap((sh) => sh.skus.map((s) => [sh.shard, sh.id, s.sku, s.released,
      s.available, s.held, s.sold, sh.counts.held ?? 0]))));
}

function throttleText(t) {
  const parts = [];
  for (const name of ["user", "device", "network", "campaign"]) {
    if (t[name]) parts.push(`${name} ${t[name].per_s}/s burst ${t[name].burst}`);
  }
  return parts.join(" · ") || "on";
}

function controls(c, parts) {
  const id = c.id;
  const patch = (body) => call("PATCH", `/admin/v1/campaigns/${enc(id)}`, body);
  const act = (text, run) => async (event) => {
    event.preventDefault();
    const form = event.target.closest("form") || event.target;
    const effect = typeof text === "function" ? text(form) : text;
    if (effect === null) return;
    if (!(await confirmEffect(effect))) return;
    try {
      await run(form);
      toast(`Applied: ${effect}`);
    } catch (err) {
      toast(`Refused: ${err.message}`, true);
    }
  };
  const num = (form, name) => {
    const raw = form.elements[name].value.trim();
    return raw === "" ? null : Number(raw);
  };
  return el("div", { class: "controls" },
    el("fieldset", {}, el("legend", { text: "state" }),
      el("button", { type: "button", "data-action": "pause",
        onclick: act(`Pause ${id}: every claim is refused (paused) from the next request `
          + "until it is resumed. Holds already made stay.", () => patch({ state: "paused" })) },
      "Pause"),
      el("button", { type: "button", "data-action": "resume",
        onclick: act(`Resume ${id}: claims are taken again from the next request.`,
          () => patch({ state: "open" })) }, "Resume"),
      el("button", { type: "button", class: "danger", "data-action": "close",
        onclick: act(`Close ${id} for good: every claim is refused from the next request, and a `
          + "closed campaign cannot be reopened.", () => patch({ state: "closed" })) }, "Close")),
    el("form", { "data-control": "stock",
      onsubmit: act((f) => {
        const delta = num(f, "delta");
        if (!Number.isInteger(delta) || delta === 0) { toast("Units: a whole number, not 0", true); return null; }
        return delta > 0 ? `Add ${delta} units to ${f.elements.sku.value} of ${id}: they are `
          + "available to the next claim (the waitlist is offered first)."
          : `Remove ${-delta} available units from ${f.elements.sku.value} of ${id} (held and `
          + "sold units are not touched).";
      }, (f) => call("POST", `/admin/v1/campaigns/${enc(id)}/skus/${enc(f.elements.sku.value)}/stock`,
        { delta: num(f, "delta") }, { "Idempotency-Key": crypto.randomUUID() })) },
    el("fieldset", {}, el("legend", { text: "stock" }),
      el("label", {}, "SKU", el("select", { name: "sku" })),
      el("label", {}, "units (+ add, − remove)", el("input", { name: "delta", type: "number", step: "1" })),
      el("button", { type: "submit" }, "Apply"))),
    el("form", { "data-control": "limits",
      onsubmit: act((f) => {
        const per = num(f, "per_user"); const most = num(f, "max_per_claim");
        if (per === null && most === null) { toast("Give a limit to change", true); return null; }
        return `Change the limits of ${id} from the next claim: `
          + [per !== null ? `${per} units per user` : "", most !== null ? `at most ${most} a claim` : ""]
            .filter(Boolean).join(", ") + ". Units already held are not taken back.";
      }, (f) => {
        const limits = {};
        if (num(f, "per_user") !== null) limits.per_user = num(f, "per_user");
        if (num(f, "max_per_claim") !== null) limits.max_per_claim = num(f, "max_per_claim");
        return patch({ limits });
      }) },
    el("fieldset", {}, el("legend", { text: "limits" }),
      el("label", {}, "per user", el("input", { name: "per_user", type: "number", min: "1" })),
      el("label", {}, "max per claim", el("input", { name: "max_per_claim", type: "number", min: "1" })),
      el("button", { type: "submit" }, "Apply"))),
    el("form", { "data-control": "throttle",
      onsubmit: act((f) => {
        const rate = num(f, "per_s");
        // A sharded campaign is patched shard by shard (a user's claims all reach one).
        const where = c.shards ? `, on each of its ${c.shards.length} shards in turn` : "";
        if (rate === null) return `Remove the per-user throttle of ${id} from the next claim${where}.`;
        return `Throttle each user of ${id} to ${rate} claims/s (burst ${num(f, "burst") ?? 1}) `
          + `from the next claim${where}; faster claims are refused (throttled) with Retry-After.`;
      }, (f) => {
        const rate = num(f, "per_s");
        return patch({ throttle: { user: rate === null ? null : { per_s: rate, burst: num(f, "burst") ?? 1 } } });
      }) },
    el("fieldset", {}, el("legend", { text: "throttle per user" }),
      el("label", {}, "claims/s", el("input", { name: "per_s", type: "number", step: "any", min: "0" })),
      el("label", {}, "burst", el("input", { name: "burst", type: "number", min: "1" })),
      el("button", { type: "submit" }, "Apply"))),
    el("form", { "data-control": "room",
      onsubmit: act((f) => `Admit ${num(f, "rate")} users/s from the waiting room of ${id}, from `
        + "the next turn.", (f) => patch({ waiting_room: { rate_per_s: num(f, "rate") } })) },
    el("fieldset", {}, el("legend", { text: "waiting room" }),
      el("label", {}, "users/s", el("input", { name: "rate", type: "number", step: "any", min: "0", required: true })),
      el("button", { type: "submit" }, "Apply"),
      el("button", { type: "button", "data-action": "pause-queue",
        onclick: act(`Pause the waiting room of ${id}: nobody more is admitted until it is resumed `
          + "(users keep their place).", () => patch({ waiting_room: { paused: true } })) }, "Pause queue"),
      el("button", { type: "button", "data-action": "resume-queue",
        onclick: act(`Resume the waiting room of ${id}: admissions start again at its rate.`,
          () => patch({ waiting_room: { paused: false } })) }, "Resume queue"))));
}
