// Compiled (never run) by `tsc --noEmit` in the tests: the SDK's declarations
// against the types generated from the current OpenAPI document, used the way
// a shop would. A contract change that breaks this breaks clients.

import { Stampede, StampedeError, ERROR_CODES, type ErrorCode } from "./stampede.js";

export async function shop(cid: string): Promise<string> {
  const client = new Stampede({ headers: { "X-User-Id": "alice" }, retry: { capMs: 5000 } });
  const status = await client.campaign(cid);
  const opens: string = status.opens_at;
  const ticket = await client.waitForAdmission(cid, {
    onUpdate: (t) => console.log(t.position, t.estimated_wait_s, t.status),
  });
  const token: string | null | undefined = ticket.admission_token;
  const sku = status.skus[0].sku;
  try {
    const hold = await client.claim(cid, { sku }, { onProgress: (p) => p.tried / p.expected });
    const expires: string = hold.expires_at;
    const done = await client.confirm(hold.claim_id);
    return `${opens} ${token} ${expires} ${done.status}`;
  } catch (err) {
    if (err instanceof StampedeError && err.code === "sold_out") {
      const entry = await client.joinWaitlist(cid, { sku });
      return entry.status;
    }
    throw err;
  }
}

export async function wallet(): Promise<number> {
  const client = new Stampede({ token: () => "jwt" });
  const { coupons } = await client.wallet("active");
  const code = await client.tillCode(coupons[0].coupon_id);
  const gift = await client.gift(coupons[0].coupon_id);
  const accepted = await client.acceptGift(gift.transfer_token);
  const known: readonly ErrorCode[] = ERROR_CODES;
  return code.code.length + accepted.face_value + known.length;
}

export async function bundle(cid: string): Promise<string[]> {
  const client = new Stampede({ headers: { "X-User-Id": "alice" } });
  const pack = await client.claim(cid, { bundle: "ticket-tee" });
  const mine = await client.claim(cid, { lines: [{ sku: "ticket", qty: 2 }, { sku: "tee" }] });
  const total: number | null | undefined = pack.price;
  return [...(pack.lines ?? []), ...(mine.lines ?? [])].map((l) => `${l.claim_id} ${total}`);
}

export async function partner(cid: string, userJwt: string): Promise<string> {
  // a partner's integration: its channel key, its user's token
  const client = new Stampede({ token: userJwt, channelKey: "partner-key-0123456789" });
  const hold = await client.claim(cid, { sku: "seated", qty: 2 });
  return hold.claim_id;
}
