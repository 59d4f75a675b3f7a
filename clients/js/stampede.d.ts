// Types of stampede.js. The API's shapes come from api.d.ts, which
// openapi-typescript generates from the OpenAPI document: a contract change
// that breaks these signatures fails `tsc --noEmit` in the tests.

import type { components } from "./api.js";
import type { ErrorCode } from "./codes.js";

export { ERROR_CODES } from "./codes.js";
export type { ErrorCode } from "./codes.js";

type S = components["schemas"];
export type CampaignPublic = S["CampaignPublic"];
export type ClaimView = S["ClaimView"];
export type QueueTicket = S["QueueTicket"];
export type WaitlistEntry = S["WaitlistEntry"];
export type WaitlistView = S["WaitlistView"];
export type LiveState = S["LiveState"];
export type CouponClaimView = S["CouponClaimView"];
export type CouponView = S["CouponView"];
export type Wallet = S["Wallet"];
export type RotatingCode = S["RotatingCode"];
export type GiftOffer = S["GiftOffer"];
export type ApiErrorBody = S["Error"];
export type Challenge = NonNullable<S["Error"]["error"]["challenge"]>;

/** An answer that is not a success; `code` is stable (docs/errors.md), "network" if none came. */
export declare class StampedeError extends Error {
  readonly status: number;
  readonly code: ErrorCode | "network" | "ticket_done" | "error";
  readonly body: ApiErrorBody | null;
  readonly details: ApiErrorBody["error"];
  readonly requestId: string | null;
  readonly retryAfterMs: number | null;
  /** Waiting may help: throttled, unavailable, a request in flight, the network. */
  readonly retryable: boolean;
}

export interface RetryPolicy {
  /** Tries in all (default 6). */
  attempts?: number;
  /** First backoff, doubled each try (default 200 ms). */
  baseMs?: number;
  /** No wait is longer; a Retry-After beyond it is not waited for but thrown (default 8000). */
  capMs?: number;
  /** Up to this fraction is added to each wait at random (default 0.3). */
  jitter?: number;
}

export interface RetryEvent {
  attempt: number;
  delayMs: number;
  error: StampedeError;
  method: string;
  path: string;
}

export interface KeyStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface StampedeOptions {
  baseUrl?: string;
  token?: string | (() => string | Promise<string>);
  headers?: Record<string, string>;
  retry?: RetryPolicy;
  storage?: KeyStore;
  onRetry?: (event: RetryEvent) => void;
  workerUrl?: string | URL;
  fetch?: typeof fetch;
  /** A channel API key (STAMPEDE_CHANNEL_KEYS): sent as X-Channel-Key with sale claims only. */
  channelKey?: string;
}

export interface SolveProgress {
  tried: number;
  /** On average a solution takes this many tries (2^difficulty). */
  expected: number;
}

export interface ClaimOptions {
  /** Names the intent whose Idempotency-Key is reused (default campaign, sku and qty). */
  intent?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  onChallenge?: (challenge: Challenge) => void;
  onProgress?: (progress: SolveProgress) => void;
}

export interface Units {
  sku: string;
  qty?: number;
}

/** A claim of one SKU, of several at once (lines), or of a bundle of the spec. */
export type ClaimUnits = Units | { lines: Units[] } | { bundle: string };

export interface Subscription {
  readonly transport: "sse" | "poll";
  close(): void;
}

export declare class Stampede {
  constructor(options?: StampedeOptions);
  readonly admission: Map<string, string>;
  lastSolve?: { difficulty: number; tried: number; ms: number };

  request<T = unknown>(method: string, path: string, options?: {
    body?: unknown; headers?: Record<string, string>; key?: string; signal?: AbortSignal;
    retry?: boolean; safe?: boolean;
  }): Promise<T>;
  intentKey(intent: string): string;
  forget(intent: string): void;

  claim(cid: string, units: ClaimUnits, options?: ClaimOptions): Promise<ClaimView>;
  claimCoupon(cid: string, units: Units, options?: ClaimOptions): Promise<CouponClaimView>;
  solveChallenge(challenge: Pick<Challenge, "token" | "difficulty">,
                 options?: { onProgress?: (p: SolveProgress) => void; signal?: AbortSignal }
                 ): Promise<string>;
  getClaim(claimId: string): Promise<ClaimView>;
  confirm(claimId: string, options?: { signal?: AbortSignal }): Promise<ClaimView>;
  cancel(claimId: string, options?: { signal?: AbortSignal }): Promise<ClaimView>;

  campaign(cid: string): Promise<CampaignPublic>;
  /** Server-sent events give LiveState; the polling fallback gives CampaignPublic. */
  live(cid: string, onState: (state: LiveState | CampaignPublic) => void,
       options?: { pollMs?: number; transport?: "sse" | "poll" }): Subscription;

  joinQueue(cid: string): Promise<QueueTicket>;
  ticket(cid: string): Promise<QueueTicket>;
  waitForAdmission(cid: string, options?: {
    onUpdate?: (ticket: QueueTicket) => void; signal?: AbortSignal; minMs?: number;
    maxMs?: number;
  }): Promise<QueueTicket>;
  joinWaitlist(cid: string, units: Units): Promise<WaitlistEntry>;
  waitlist(cid: string, sku?: string): Promise<WaitlistView>;
  leaveWaitlist(cid: string, sku: string): Promise<WaitlistEntry>;

  wallet(status?: string): Promise<Wallet>;
  coupon(couponId: string): Promise<CouponView>;
  tillCode(couponId: string): Promise<RotatingCode>;
  gift(couponId: string): Promise<GiftOffer>;
  acceptGift(transferToken: string): Promise<CouponView>;
}
