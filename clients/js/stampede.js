// Stampede browser SDK: a plain ES module, no build step.
//
//   import { Stampede, StampedeError } from "/sdk/v1/stampede.js";
//   const shop = new Stampede({ token: userJwt });
//   await shop.waitForAdmission("spring-drop", { onUpdate: (t) => show(t) });
//   const hold = await shop.claim("spring-drop", { sku: "tee-black" });
//   await shop.confirm(hold.claim_id);
//
// What it does for you: one Idempotency-Key per intent, kept across retries
// (and across page reloads, in sessionStorage) so a double click or a lost
// answer never makes two holds; retries on network errors, 429, 503 and a
// 409 "still in flight" honouring Retry-After, with jitter and a cap;
// proof-of-work challenges solved in a Web Worker (pow-worker.js) with
// progress; the waiting room's admission token carried to the claim; the live
// feed (server-sent events, or ETag polling where EventSource is missing);
// errors as StampedeError with the stable `code` (codes.js, docs/errors.md).
// Types: stampede.d.ts (and api.d.ts, generated from the OpenAPI document).

export { ERROR_CODES } from "./codes.js";

/** An answer that is not a success: `status`, the stable `code`, the server's `message`. */
export class StampedeError extends Error {
  constructor(status, body, response) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.name = "StampedeError";
    this.status = status;
    this.code = err.code || (status === 0 ? "network" : "error");
    this.body = body;
    this.details = err;
    this.requestId = response ? response.headers.get("X-Request-Id") : null;
    this.retryAfterMs = retryAfterMs(response, err);
  }
  /** Waiting may help: throttled, unavailable, a request still in flight, the network. */
  get retryable() {
    return this.status === 0 || this.status === 429 || this.status === 503
      || (this.status === 409 && this.code === "conflict" && this.retryAfterMs !== null);
  }
}

function retryAfterMs(response, err) {
  if (err && Number.isFinite(err.retry_after_ms)) return err.retry_after_ms;
  const header = response && response.headers.get("Retry-After");
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null;
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  if (signal && signal.aborted) return reject(signal.reason);
  const timer = setTimeout(resolve, ms);
  if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); },
    { once: true });
});

function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0")).join("");
}

function memoryStore() {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v),
           removeItem: (k) => m.delete(k) };
}

const DEFAULT_RETRY = { attempts: 6, baseMs: 200, capMs: 8000, jitter: 0.3 };

export class Stampede {
  /**
   * @param {object} [options]
   *   baseUrl   where the public API is ("" = this page's origin)
   *   token     a user's bearer JWT, or a function returning one
   *   headers   extra headers on every call (dev auth: {"X-User-Id": "alice"})
   *   retry     {attempts, baseMs, capMs, jitter}: see DEFAULT_RETRY
   *   storage   where intents' Idempotency-Keys live (default sessionStorage)
   *   onRetry   called before each retry with {attempt, delayMs, error}
   *   workerUrl the proof-of-work worker (default: pow-worker.js beside this module)
   *   fetch     a fetch implementation (default globalThis.fetch)
   *   channelKey a channel API key (a partner's, a box office's): sent as X-Channel-Key
   *             with each sale claim only, so it takes from that channel's allocations
   */
  constructor(options = {}) {
    this.baseUrl = (options.baseUrl || "").replace(/\/$/, "");
    this.token = options.token;
    this.headers = { ...(options.headers || {}) };
    this.retry = { ...DEFAULT_RETRY, ...(options.retry || {}) };
    this.storage = options.storage || globalThis.sessionStorage || memoryStore();
    this.onRetry = options.onRetry;
    this.workerUrl = options.workerUrl || new URL("./pow-worker.js", import.meta.url);
    this._fetch = options.fetch || globalThis.fetch.bind(globalThis);
    this.channelKey = options.channelKey;
    this.admission = new Map();
    this._inFlight = new Map();
    this._etags = new Map();
  }

  // -- the core: one call, retried -----------------------------------------------------

  /** One API call with retries. `key` is sent as Idempotency-Key on every attempt. */
  async request(method, path, { body, headers, key, signal, retry = true, safe } = {}) {
    const { attempts, baseMs, capMs, jitter } = this.retry;
    for (let attempt = 1; ; attempt++) {
      let error;
      try {
        return await this._once(method, path, body, headers, key, signal);
      } catch (err) {
        if (!(err instanceof StampedeError)) throw err;  // an abort, a bug: not retried
        error = err;
      }
      // Without a key, only reads (and calls whose repeat answers the first) are sent again.
      const again = safe ?? (method === "GET" || key !== undefined);
      if (!retry || !again || !error.retryable || attempt >= attempts) throw error;
      const backoff = Math.min(capMs, baseMs * 2 ** (attempt - 1));
      const wait = Math.max(backoff, error.retryAfterMs ?? 0);
      if (wait > capMs && error.retryAfterMs !== null) throw error;  // longer than we wait
      const delayMs = Math.round(wait * (1 + Math.random() * jitter));
      if (this.onRetry) this.onRetry({ attempt, delayMs, error, method, path });
      await sleep(delayMs, signal);
    }
  }

  async _once(method, path, body, headers, key, signal) {
    const h = { ...this.headers, ...(headers || {}) };
    const token = typeof this.token === "function" ? await this.token() : this.token;
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (key !== undefined) h["Idempotency-Key"] = key;
    let response;
    try {
      response = await this._fetch(this.baseUrl + path, {
        method, headers: h, signal, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      if (signal && signal.aborted) throw err;
      throw new StampedeError(0, { error: { code: "network", message: String(err) } }, null);
    }
    if (response.status === 304) return { notModified: true, response };
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!response.ok) throw new StampedeError(response.status, data, response);
    return data;
  }

  /** The Idempotency-Key of an intent: the same until `forget(intent)`. */
  intentKey(intent) {
    const name = `stampede:intent:${intent}`;
    let key = this.storage.getItem(name);
    if (!key) { key = newKey(); this.storage.setItem(name, key); }
    return key;
  }

  forget(intent) { this.storage.removeItem(`stampede:intent:${intent}`); }

  /** Runs `run` once per intent at a time: a second call while one runs gets its promise. */
  _oncePerIntent(intent, run) {
    const running = this._inFlight.get(intent);
    if (running) return running;
    const p = run().finally(() => this._inFlight.delete(intent));
    this._inFlight.set(intent, p);
    return p;
  }

  // -- claims ----------------------------------------------------------------------

  /**
   * Claim units: a hold. Double calls for the same (campaign, sku, qty) share one
   * request; retries and reloads reuse its Idempotency-Key, so there is one hold.
   * A challenge is solved in the worker (onChallenge/onProgress report it).
   * Several SKUs at once, all or nothing: { lines: [{ sku, qty }, ...] }, or a bundle
   * of the campaign's spec: { bundle: "name" } (the answer lists its lines).
   */
  claim(cid, { sku, qty = 1, lines, bundle }, options = {}) {
    let body = { sku, qty };
    let what = `${sku}:${qty}`;
    if (bundle !== undefined) {
      body = { bundle };
      what = `bundle:${bundle}`;
    } else if (lines !== undefined) {
      body = { lines: lines.map((l) => ({ sku: l.sku, qty: l.qty ?? 1 })) };
      what = `lines:${body.lines.map((l) => `${l.sku}:${l.qty}`).join(",")}`;
    }
    const intent = options.intent || `claim:${cid}:${what}`;
    const sale = this.channelKey
      ? { ...options, headers: { "X-Channel-Key": this.channelKey, ...(options.headers || {}) } }
      : options;
    return this._oncePerIntent(intent, () => this._guarded(
      `/v1/campaigns/${enc(cid)}/claims`, body, cid, intent, sale));
  }

  /** Claim a coupon (or a gift pack) of a drop: final at once. */
  claimCoupon(cid, { sku, qty = 1 }, options = {}) {
    const intent = options.intent || `coupon:${cid}:${sku}:${qty}`;
    return this._oncePerIntent(intent, () => this._guarded(
      `/v1/campaigns/${enc(cid)}/coupons`, { sku, qty }, cid, intent, options));
  }

  async _guarded(path, body, cid, intent, options) {
    const key = this.intentKey(intent);
    const headers = { ...(options.headers || {}) };
    const token = this.admission.get(cid);
    if (token) headers["X-Admission-Token"] = token;
    for (let solved = 0; ; solved++) {
      try {
        return await this.request("POST", path, { body, headers, key, signal: options.signal });
      } catch (err) {
        const challenge = err instanceof StampedeError && err.code === "challenge_required"
          && err.details.challenge;
        if (!challenge || solved >= 2) throw err;
        if (options.onChallenge) options.onChallenge(challenge);
        const solution = await this.solveChallenge(challenge, options);
        headers["X-Challenge-Token"] = challenge.token;
        headers["X-Challenge-Solution"] = solution;
      }
    }
  }

  /** Solve a challenge in a Web Worker: resolves to the X-Challenge-Solution. */
  solveChallenge({ token, difficulty }, { onProgress, signal } = {}) {
    return new Promise((resolve, reject) => {
      const worker = new Worker(this.workerUrl, { type: "module" });
      const done = () => worker.terminate();
      if (signal) signal.addEventListener("abort", () => { done(); reject(signal.reason); },
        { once: true });
      worker.onmessage = ({ data }) => {
        if (data.progress !== undefined) {
          if (onProgress) onProgress({ tried: data.progress, expected: 2 ** difficulty });
          return;
        }
        done();
        if (data.error) reject(new Error(data.error));
        else {
          this.lastSolve = { difficulty, tried: data.tried, ms: data.ms };
          resolve(data.solution);
        }
      };
      worker.onerror = (event) => { done(); reject(new Error(event.message || "worker failed")); };
      worker.postMessage({ token, difficulty });
    });
  }

  getClaim(claimId) { return this.request("GET", `/v1/claims/${enc(claimId)}`); }

  /** Confirm (pay for) a hold, retried with one key. */
  confirm(claimId, options = {}) {
    return this.request("POST", `/v1/claims/${enc(claimId)}/confirm`,
      { key: this.intentKey(`confirm:${claimId}`), signal: options.signal });
  }

  /** Give a hold back: its units return. */
  cancel(claimId, options = {}) {
    return this.request("POST", `/v1/claims/${enc(claimId)}/cancel`,
      { key: this.intentKey(`cancel:${claimId}`), signal: options.signal });
  }

  // -- the campaign, live ----------------------------------------------------------

  /** The public status; with an ETag kept per campaign (a 304 answers the last one). */
  async campaign(cid) {
    const path = `/v1/campaigns/${enc(cid)}`;
    const known = this._etags.get(path);
    const headers = known ? { "If-None-Match": known.etag } : {};
    const h = { ...this.headers, ...headers };
    const response = await this._fetch(this.baseUrl + path, { headers: h });
    if (response.status === 304 && known) return known.body;
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new StampedeError(response.status, body, response);
    const etag = response.headers.get("ETag");
    if (etag) this._etags.set(path, { etag, body });
    return body;
  }

  /**
   * Follow a campaign: onState(state) on each change. Server-sent events where the
   * browser has EventSource (it reconnects by itself), else polling with ETag.
   * Returns {close()}.
   */
  live(cid, onState, { pollMs = 2000, transport } = {}) {
    const url = `${this.baseUrl}/v1/campaigns/${enc(cid)}/live`;
    if ((transport || (globalThis.EventSource ? "sse" : "poll")) === "sse") {
      const source = new EventSource(url);
      source.addEventListener("state", (e) => onState(JSON.parse(e.data)));
      return { transport: "sse", close: () => source.close() };
    }
    let stopped = false, last = null;
    const tick = async () => {
      while (!stopped) {
        try {
          const state = await this.campaign(cid);
          if (state !== last) { last = state; onState(state); }
        } catch { /* keep polling: the next tick may succeed */ }
        await sleep(pollMs);
      }
    };
    tick();
    return { transport: "poll", close: () => { stopped = true; } };
  }

  // -- waiting room and waitlist ------------------------------------------------------

  joinQueue(cid) {
    return this.request("POST", `/v1/campaigns/${enc(cid)}/queue`, { safe: true })
      .then((t) => this._keepAdmission(cid, t));
  }

  ticket(cid) {
    return this.request("GET", `/v1/campaigns/${enc(cid)}/queue/me`)
      .then((t) => this._keepAdmission(cid, t));
  }

  _keepAdmission(cid, ticket) {
    if (ticket && ticket.admission_token) this.admission.set(cid, ticket.admission_token);
    return ticket;
  }

  /**
   * Take a ticket and poll it until admitted (then claims carry its token). Polls
   * sooner as the turn nears: between minMs and maxMs. onUpdate(ticket) each time.
   */
  async waitForAdmission(cid, { onUpdate, signal, minMs = 500, maxMs = 5000 } = {}) {
    let ticket = await this.joinQueue(cid);
    for (;;) {
      if (onUpdate) onUpdate(ticket);
      if (ticket.status === "admitted") return ticket;
      if (ticket.status === "done") throw new StampedeError(409, { error: {
        code: "ticket_done", message: "this ticket's turn has passed" } }, null);
      const wait = ticket.estimated_wait_s == null ? maxMs : ticket.estimated_wait_s * 500;
      await sleep(Math.min(maxMs, Math.max(minMs, wait)), signal);
      ticket = await this.ticket(cid);
    }
  }

  joinWaitlist(cid, { sku, qty = 1 }) {
    const headers = {};
    if (this.admission.get(cid)) headers["X-Admission-Token"] = this.admission.get(cid);
    return this.request("POST", `/v1/campaigns/${enc(cid)}/waitlist`,
      { body: { sku, qty }, headers, safe: true });
  }

  waitlist(cid, sku) {
    const q = sku ? `?sku=${enc(sku)}` : "";
    return this.request("GET", `/v1/campaigns/${enc(cid)}/waitlist${q}`);
  }

  leaveWaitlist(cid, sku) {
    return this.request("DELETE", `/v1/campaigns/${enc(cid)}/waitlist?sku=${enc(sku)}`,
      { safe: true });
  }

  // -- coupons: wallet and gifting -----------------------------------------------------

  wallet(status) {
    return this.request("GET", `/v1/me/coupons${status ? `?status=${enc(status)}` : ""}`);
  }

  coupon(couponId) { return this.request("GET", `/v1/coupons/${enc(couponId)}`); }

  /** A code to show at a till; it rotates: fetch again before `expires_at`. */
  tillCode(couponId) { return this.request("GET", `/v1/coupons/${enc(couponId)}/code`); }

  gift(couponId) {
    return this.request("POST", `/v1/coupons/${enc(couponId)}/gift`,
      { key: this.intentKey(`gift:${couponId}`) });
  }

  acceptGift(transferToken) {
    return this.request("POST", "/v1/gifts/accept", {
      body: { transfer_token: transferToken }, key: this.intentKey(`accept:${transferToken}`) });
  }
}

function enc(part) { return encodeURIComponent(part); }
