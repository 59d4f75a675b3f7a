// The demo storefront: everything a rush-sale page needs, on the browser SDK.
// Copy from it: each block below is one thing a shop must get right.
import { Stampede, StampedeError } from "../sdk/v1/stampede.js";
import qrcode from "./qrcode.mjs";

const params = new URLSearchParams(location.search);
const cid = params.get("campaign") || "spring-drop";
const sku = params.get("sku") || "tee-black";
const drop = params.get("drop");
const template = params.get("coupon");
const $ = (id) => document.getElementById(id);
const show = (id, on = true) => { $(id).hidden = !on; };

// -- who: dev auth stands in for a login (STAMPEDE_DEV_AUTH=1) ------------------------
// A real shop passes {token: jwt} instead; the JWT's created_at and idh claims
// are what X-Account-Created and X-Identity-Hash stand for here.
const user = params.get("user") || localStorage.getItem("demo-user")
  || `shopper-${Math.random().toString(36).slice(2, 8)}`;
localStorage.setItem("demo-user", user);
const created = params.get("new") ? Math.floor(Date.now() / 1000) : 1_600_000_000;
$("user").textContent = user;

// Exposed for the tests and for anyone curious: what the page measured.
const metrics = window.demoMetrics = { retries: 0, admittedAt: null, firstClaimMs: null };

const shop = new Stampede({
  headers: { "X-User-Id": user, "X-Account-Created": String(created),
             "X-Identity-Hash": `idh-${user}` },
  onRetry: ({ attempt, delayMs, error }) => {
    metrics.retries++;
    $("retrying").textContent = `Connection trouble (${error.code}); trying again in `
      + `${(delayMs / 1000).toFixed(1)} s (attempt ${attempt + 1})…`;
    show("retrying");
  },
});
window.demoShop = shop;

function fail(where, err) {
  $(where).textContent = err instanceof StampedeError ? `${err.message} (${err.code})`
    : String(err);
  show(where);
}

function left(until) {
  const s = Math.max(0, Math.round((Date.parse(until) - Date.now()) / 1000));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// -- the campaign: status once, then the live feed ------------------------------------
let campaign = null;
let admitted = false;

function drawStock(state) {
  const line = state.skus.find((s) => s.sku === sku);
  if (line) $("available").textContent = line.available;
  $("state").textContent = state.state;
}

async function start() {
  try {
    campaign = await shop.campaign(cid);
  } catch (err) { return fail("error", err); }
  $("title").textContent = campaign.name;
  $("product").textContent = sku;
  drawStock(campaign);
  const feed = shop.live(cid, (state) => {
    drawStock(state);
    $("feed").textContent = `live feed: ${feed.transport}`;
  });
  countdown();
  enterQueue();
}

// -- countdown to the opening ---------------------------------------------------------
function countdown() {
  const tick = () => {
    const opensIn = Date.parse(campaign.opens_at) - Date.now();
    show("countdown", opensIn > 0);
    $("opens-in").textContent = left(campaign.opens_at);
    if (opensIn > 0) setTimeout(tick, 250);
    else ready();
  };
  tick();
}

// -- the waiting room: a ticket, its place, then the admission token -------------------
async function enterQueue() {
  try {
    await shop.waitForAdmission(cid, {
      onUpdate: (t) => {
        show("queue");
        $("queue-status").textContent = t.status === "admitted" ? "your turn!" : t.status;
        $("position").textContent = t.position ?? "drawn at the opening";
        $("ahead").textContent = t.ahead ?? "—";
        $("eta").textContent = t.estimated_wait_s == null ? "—"
          : `${Math.ceil(t.estimated_wait_s)} s`;
        if (t.position) $("queue-progress").value = Math.min(1, t.serving / t.position);
      },
    });
  } catch (err) {
    // No waiting room for this campaign: everyone may claim at the opening.
    if (!(err instanceof StampedeError && err.status === 404)) return fail("error", err);
  }
  admitted = true;
  metrics.admittedAt = performance.now();
  ready();
}

function ready() {
  if (drop === cid) return show("claim", false);  // a coupon drop has no sale to claim
  const open = Date.parse(campaign.opens_at) <= Date.now();
  $("claim").disabled = !(open && admitted);
}

// -- the claim: double clicks and flaky networks make one hold -----------------------
// No `disabled` dance is needed for correctness: the SDK runs one request per
// intent at a time and keeps its Idempotency-Key across retries and reloads.
$("claim").addEventListener("click", async () => {
  show("error", false);
  $("claim").classList.add("busy");
  try {
    const hold = await shop.claim(cid, { sku }, {
      onChallenge: () => show("challenge"),
      onProgress: ({ tried, expected }) => {
        $("challenge-progress").textContent = `${Math.min(99, Math.round(100 * tried / expected))}%`;
      },
    });
    if (metrics.firstClaimMs === null && metrics.admittedAt !== null) {
      metrics.firstClaimMs = performance.now() - metrics.admittedAt;
    }
    metrics.solve = shop.lastSolve || null;
    showHold(hold);
  } catch (err) {
    if (err instanceof StampedeError && err.code === "sold_out") offerWaitlist();
    else fail("error", err);
  } finally {
    show("challenge", false);
    show("retrying", false);
  }
});

// -- the hold: its own countdown, confirm or give back ---------------------------------
let holdTimer = null;
let current = null;

function showHold(hold) {
  current = hold;
  window.demoHold = hold;
  show("claim", false);
  show("hold");
  clearInterval(holdTimer);
  const tick = () => {
    $("hold-left").textContent = left(hold.expires_at);
    if (Date.parse(hold.expires_at) <= Date.now()) {
      clearInterval(holdTimer);
      show("hold", false);
      fail("error", "the hold has expired");
    }
  };
  tick();
  holdTimer = setInterval(tick, 500);
}

async function settle(action) {
  try {
    const out = action === "confirm" ? await shop.confirm(current.claim_id)
      : await shop.cancel(current.claim_id);
    clearInterval(holdTimer);
    show("hold", false);
    show("waitlist", false);
    shop.forget(`claim:${cid}:${sku}:1`);  // a new purchase is a new intent
    $("done").textContent = action === "confirm" ? `Order confirmed: ${out.claim_id}`
      : "Given back. Thanks!";
    show("done");
  } catch (err) { fail("error", err); }
}
$("confirm").addEventListener("click", () => settle("confirm"));
$("cancel").addEventListener("click", () => settle("cancel"));

// -- sold out: the waitlist, and the offer when a unit comes back ---------------------
function offerWaitlist() {
  show("claim", false);
  show("waitlist");
}

$("join-waitlist").addEventListener("click", async () => {
  try {
    await shop.joinWaitlist(cid, { sku });
    $("join-waitlist").disabled = true;
    pollWaitlist();
  } catch (err) { fail("error", err); }
});

async function pollWaitlist() {
  for (;;) {
    try {
      const { entries } = await shop.waitlist(cid, sku);
      const entry = entries[0];
      if (entry && entry.status === "offered" && entry.offer) {
        $("waitlist-status").textContent = "A unit came back: it is held for you!";
        return showHold(entry.offer);
      }
      $("waitlist-status").textContent = entry ? `You are number ${entry.position} in line.` : "";
    } catch (err) { fail("error", err); }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// -- coupons: claim, wallet, and a rotating till code as a QR code ----------------------
async function drawWallet() {
  const { coupons } = await shop.wallet();
  const list = $("wallet");
  list.textContent = "";
  for (const c of coupons) {
    const li = document.createElement("li");
    li.textContent = `${c.template} · ${c.status} · ${c.face_value} off `;
    if (c.status === "active") {
      const button = document.createElement("button");
      button.textContent = "Show at till";
      button.className = "show-till";
      button.addEventListener("click", () => showTill(c.coupon_id));
      li.appendChild(button);
    }
    list.appendChild(li);
  }
}

let tillTimer = null;

async function showTill(couponId) {
  clearTimeout(tillTimer);
  try {
    const code = await shop.tillCode(couponId);
    const qr = qrcode(0, "M");
    qr.addData(code.code);
    qr.make();
    $("qr").innerHTML = qr.createImgTag(6, 16, "till code");
    $("till-code").textContent = code.code;
    window.demoTillCode = code.code;
    show("till");
    const tick = () => { $("till-left").textContent = left(code.expires_at); };
    tick();
    const every = setInterval(tick, 500);
    // Fetch the next code shortly before this one stops working.
    const next = Math.max(1000, Date.parse(code.expires_at) - Date.now() - 5000);
    tillTimer = setTimeout(() => { clearInterval(every); showTill(couponId); }, next);
  } catch (err) { fail("coupon-error", err); }
}

if (drop && template) {
  show("coupons");
  $("claim-coupon").addEventListener("click", async () => {
    show("coupon-error", false);
    try {
      await shop.claimCoupon(drop, { sku: template });
      await drawWallet();
    } catch (err) { fail("coupon-error", err); }
  });
  drawWallet().catch((err) => fail("coupon-error", err));
}

start();
