"""`Coupons`: the engine API of coupon drops, wallets, redemption and gifting.

Every change is one Lua operation (lua/coupon_*.lua); this module verifies
codes, prices orders (discount.py), builds keys and arguments and decodes
answers. Answers are (Outcome, reason, view): the reason names a refusal
more precisely than the outcome (budget, merchant_cap, stacking, ...), and
the gateway turns both into the stable error codes of the contract.
"""

import dataclasses
import functools
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
from redis.asyncio import Redis

from stampede.domain import throttle
from stampede.domain.batcher import ClaimBatcher, in_flight
from stampede.domain.coupons import (
    changes,
    codes,
    discount,
    points,
    pricing,
    promo,
    sharded,
    templates,
)
from stampede.domain.coupons.codes import CodeKeys
from stampede.domain.coupons.paid import PaidVouchers
from stampede.domain.coupons.points import PointsLedger
from stampede.domain.coupons.pricing import TemplateRules, order_total
from stampede.domain.coupons.spec import (
    CartLine,
    CouponClaimView,
    CouponDropPatch,
    CouponDropPatched,
    CouponStats,
    CouponStatus,
    CouponTotals,
    CouponView,
    GiftOffer,
    LineDiscount,
    MerchantCredentials,
    MerchantSpec,
    Qualification,
    QualifyView,
    RedemptionRequest,
    RedemptionView,
    ReferralCodeView,
    RotatingCode,
    TemplateSpec,
)
from stampede.domain.gate import ClaimGate
from stampede.domain.models import from_ms
from stampede.domain.shards import Shards, shard_of_user
from stampede.domain.throttle import NO_GUARD, ChallengeView, ClientSignals, Guard
from stampede.errors import UnavailableError, ValidationError
from stampede.outcomes import GUARD_REFUSALS, OUTCOMES, Outcome, parse_detail
from stampede.settings import Settings
from stampede.state import keys, records
from stampede.state.records import CouponClaimArg, CouponRecord, PointsArg
from stampede.state.scripts import ScriptRegistry

GIFT_TTL_MS = 86_400_000
_IDENTITY = re.compile(r"^[A-Za-z0-9_.:=+/-]{1,128}$")
_TOKEN = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})\.([0-9a-f]{32})$")
_spec_decoder = msgspec.json.Decoder(TemplateSpec)
_merchant_decoder = msgspec.json.Decoder(dict[str, Any])
_json = msgspec.json.Encoder()


@functools.lru_cache(maxsize=4096)
def _template(raw: str) -> TemplateSpec:
    return _spec_decoder.decode(raw)


@dataclass(frozen=True, slots=True)
class _PendingCouponClaim:
    claim_id: str
    user: str
    sku: str
    qty: int
    idempotency_key: str | None
    admission_exp: int
    identity: str
    seed: str
    guard: Guard = NO_GUARD
    """Device, network, risk signals and verified challenge solution, for the scalper guard."""
    code: str | None = None
    """The promo or referral code claimed with (normalized); the SKU is then ''."""
    referrer: str = ""
    """The member the referral code belonged to when read, '' otherwise."""
    paid: PointsArg | None = None
    """The points debit of a points-priced SKU."""


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    groups: tuple[str, ...]
    region: str | None


@dataclass(frozen=True)
class Answer:
    """An outcome, the reason of a refusal ('' if none), and the view when OK.

    A guard refusal of a claim (THROTTLED, BLOCKED, CHALLENGE_REQUIRED) has the
    guard's reason and, as a sale claim's, the exact retry-after or the challenge."""
    outcome: Outcome
    reason: str = ""
    view: Any = None
    retry_after_ms: int | None = None
    challenge: ChallengeView | None = None
    params: dict[str, int] = field(default_factory=dict)
    """The numbers of the refusal (its limit, what is held, ...), named as
    REFUSALS[reason].values in stampede/outcomes.py."""


def refused(outcome: Outcome, detail: str) -> Answer:
    """A refusal from a script's detail "reason[:value[:value]]"."""
    reason, params = parse_detail(detail)
    return Answer(outcome, reason, params=params)


_NEEDS_GUARD = Answer(Outcome.GUARD_CONTEXT_NEEDED)
"""Placeholder of a claim the script sent back for its guard context."""


@dataclass(frozen=True)
class _Found:
    cid: str
    coupon_id: str
    record: CouponRecord
    template: TemplateSpec

    @property
    def tid(self) -> str:
        return self.record.tpl


EXTEND_BATCH = 200
"""Coupons a validity-extension script call looks at (HSCAN COUNT): about 10 ms a call
(bench/coupon_extend_bench.py)."""


class Coupons:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry, settings: Settings,
                 gate: ClaimGate, shards: Shards | None = None) -> None:
        self.redis = redis
        self.scripts = scripts
        self.settings = settings
        self.gate = gate
        """Admission tokens, challenges and guard state, shared with the sale claims."""
        self.shards = shards if shards is not None else Shards(redis, scripts)
        """Sharded drops: shard counts and moves of units, shared with the sale claims."""
        self._drops: dict[int, str] = {}
        self.points: PointsLedger | None = None
        """The points service (STAMPEDE_POINTS_URL), wired by the runtime; None: off."""

    @functools.cached_property
    def paid(self) -> PaidVouchers:
        """Paid vouchers: pay, refund and read a paid voucher's hold (paid.py)."""
        return PaidVouchers(self.redis, self.scripts)

    @functools.cached_property
    def keys(self) -> CodeKeys:
        if self.settings.coupon_keys:
            return CodeKeys.parse(self.settings.coupon_keys)
        return CodeKeys.kept(self.settings.data_dir / "coupon.secret")

    # -- drops ---------------------------------------------------------------

    async def drop_number(self, cid: str) -> str:
        """The drop's code prefix: kept across a redefinition, else the next number."""
        current = await self.redis.hget(keys.campaign_keys(cid).meta, "cp_no")
        if current:
            return str(current)
        n = int(await self.redis.hincrby(keys.DROP_NUMBERS, "seq", 1))
        if n >= codes.MAX_DROPS:
            raise ValidationError("no drop numbers left")
        await self.redis.hset(keys.DROP_NUMBERS, str(n), cid)
        return codes.encode(n, codes.DROP_CHARS)

    async def registered(self, cid: str, is_drop: bool) -> None:
        if is_drop:
            await self.redis.sadd(keys.COUPON_DROPS, cid)
        else:
            await self.redis.srem(keys.COUPON_DROPS, cid)

    async def _cid_of_drop(self, number: int) -> str | None:
        cid = self._drops.get(number)
        if cid is None:
            cid = cast(str | None, await self.redis.hget(keys.DROP_NUMBERS, str(number)))
            if cid is not None:
                self._drops[number] = cid
        return cid

    # -- claims --------------------------------------------------------------

    async def claim(self, cid: str, user: str, sku: str, qty: int = 1,
                    idempotency_key: str | None = None, admission_token: str | None = None,
                    identity: str | None = None,
                    client: ClientSignals | None = None, code: str | None = None) -> Answer:
        """Claim a SKU of a drop: final at once; the view lists the coupons issued.

        With `code` (and sku ''), the SKU is the one a promo code or a member's
        referral code issues (coupon_claim.lua resolves the code; a wrong one
        spends the user's wrong-code allowance).

        A guarded drop checks the claim's `client` signals first, as a sale claim's
        (THROTTLED, BLOCKED or CHALLENGE_REQUIRED, with retry-after or a challenge).
        Coalesced with the other coupon claims of this loop tick (one script call)."""
        _check(keys.valid_campaign_id(cid), "campaign id is not valid")
        _check(keys.valid_user_id(user), "user id is not valid")
        _check(identity is None or bool(_IDENTITY.match(identity)), "identity is not valid")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise ValidationError("Idempotency-Key must be 1 to 255 characters")
        n = await self.shards.count(cid)
        scid = cid if n is None or n <= 1 else keys.shard_id(cid, shard_of_user(user, n), n)
        referrer = ""
        if code is not None:
            _check(sku == "", "claim a SKU or a code, not both")
            code = codes.normalize(code)
            if not promo.well_formed(code):  # no code has this shape: nothing to look up
                return Answer(Outcome.NOT_FOUND, "no_code")
            referrer = await promo.referrer_of(self.redis, scid, code)
        else:
            _check(keys.valid_sku(sku), "sku is not valid")
        pending = _PendingCouponClaim(keys.new_claim_id(scid), user, sku, qty, idempotency_key,
                                      # a token admits to the campaign, not a shard
                                      self.gate.admission_exp(cid, user, admission_token),
                                      identity or "", codes.new_seed(),
                                      self.gate.guard(scid, user, client), code, referrer)
        if n is not None and n > 1:
            return await self._claim_sharded(cid, n, scid, pending)
        answer: Answer = await self.batcher.submit(cid, pending)  # type: ignore[arg-type]
        if answer.reason == "points_price" and answer.params.get("amount", -1) > 0:
            # A points-priced SKU (the script said so, and its price): pay, then claim.
            return await self._exchange(cid, pending, answer.params["amount"] * qty)
        return answer

    async def _claim_sharded(self, cid: str, n: int, scid: str,
                             pending: _PendingCouponClaim) -> Answer:
        """A claim of a sharded drop on the user's shard (scid); when that shard is dry,
        units of the SKU are borrowed from the other shards and the claim sent again, as
        a sale claim's (Engine._claim_sharded): SOLD_OUT means every other shard was read
        dry after the shard's last try. The guard checks the first try only."""
        return await self.shards.claim_borrowing(
            cid, n, scid,
            lambda key: self.batcher.submit(key, pending),  # type: ignore[arg-type]
            lambda answer: answer.reason, pending.qty)  # the reason names the SKU

    async def _exchange(self, cid: str, pending: _PendingCouponClaim, total: int) -> Answer:
        """A claim of a points-priced SKU: debit, then claim; refund if the claim is refused."""
        key = pending.idempotency_key
        if key is None:
            return Answer(Outcome.INVALID, "points_key_required")
        if self.points is None:
            return Answer(Outcome.FENCED, "points_unavailable")
        debit = points.debit_id(cid, pending.user, key, pending.sku, pending.qty)
        pending = dataclasses.replace(pending, claim_id=points.claim_id(cid, debit),
                                      paid=PointsArg(debit=debit, points=total))
        idem = keys.idempotency_key(cid, pending.user, "coupon:" + key)
        if not await self.redis.exists(idem):  # else answered before: the script answers again
            paid = await self.points.debit(debit, pending.user, total, cid, pending.sku)
            if paid.status == "unavailable":
                return Answer(Outcome.FENCED, "points_unavailable")
            if paid.status != "debited":
                return Answer(Outcome.CONFLICT, "points_refused" if paid.status == "refused"
                              else "points_refunded")
        answer: Answer = await self.batcher.submit(cid, pending)  # type: ignore[arg-type]
        if answer.outcome is not Outcome.OK:  # nothing was issued: the points go back
            await self.points.refund(debit)  # idempotent: a retry of the claim refunds again
        return answer

    async def referral_code(self, cid: str, user: str, identity: str | None) -> Answer:
        """The member's personal referral code of a drop (minted on the first request)."""
        _check(keys.valid_campaign_id(cid), "campaign id is not valid")
        _check(keys.valid_user_id(user), "user id is not valid")
        _check(identity is None or bool(_IDENTITY.match(identity)), "identity is not valid")
        code, reason, text, created = await self.scripts.run(
            "coupon_referral_code", [*keys.coupon_keys(cid)],
            [user, identity or "", codes.new_seed()])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            return refused(outcome, reason)
        return Answer(outcome, "", ReferralCodeView(campaign_id=cid, code=text,
                                                    created=bool(int(created))))

    @functools.cached_property
    def batcher(self) -> ClaimBatcher[Answer]:
        return ClaimBatcher(self._claim_batch, self.settings.max_batch,  # type: ignore[arg-type]
                            in_flight(self.settings.durable_ack,
                                      self.settings.replica_ack))

    async def _claim_batch(self, cid: str,
                           claims: Sequence["_PendingCouponClaim"]) -> list[Answer]:
        return await self.gate.routed_batch(cid, claims, self._claim_batch_once, _NEEDS_GUARD)

    async def _claim_batch_once(self, cid: str, claims: Sequence["_PendingCouponClaim"],
                                guarded: bool, dry: bool = False,
                                passed: bool = False) -> list[Answer]:
        ks = [*keys.coupon_keys(cid), *keys.guard_keys(cid)]
        slot = throttle.key_slots(ks)  # each guard key once per batch
        recent = await self.gate.recent_counts(cid, claims)
        batch = []
        for c in claims:
            ks.append(keys.wallet_key(cid, c.user))
            wallet, idem = len(ks), 0
            if c.idempotency_key is not None:
                ks.append(keys.idempotency_key(cid, c.user, "coupon:" + c.idempotency_key))
                idem = len(ks)
            guard = throttle.guard_arg(cid, c.user, c.guard, recent.get(c.user, -1), slot) \
                if guarded else None
            code = None
            if c.code is not None:
                code = promo.code_arg(cid, c.user, c.code, c.referrer, ks)
            batch.append(CouponClaimArg(
                claim_id=c.claim_id, user=c.user, sku=c.sku, qty=c.qty, wallet_slot=wallet,
                idem_slot=idem, admission=c.admission_exp, identity=c.identity, seed=c.seed,
                fingerprint=f"{c.sku}:{c.qty}" if c.code is None else f"code:{c.code}:{c.qty}",
                guard=guard, code=code, points=c.paid))
        reply = await self.scripts.run("coupon_claim", ks, [
            self.settings.idempotency_ttl_s * 1000, records.encode_claims(batch),
            "1" if dry else "0", "1" if passed else "0"])
        campaign = keys.shard_of_id(cid)[0]
        answers, i = [], 0
        for c in claims:
            code, reason, claim_id, at, n = reply[i:i + 5]
            rows = reply[i + 5:i + 5 + 3 * int(n)]
            i += 5 + 3 * int(n)
            outcome = OUTCOMES[int(code)]
            if outcome is Outcome.GUARD_CONTEXT_NEEDED:  # guarded after all: sent again
                answers.append(_NEEDS_GUARD)
                continue
            if outcome is Outcome.SHARD_DRY:  # the reason names the SKU to borrow
                answers.append(Answer(outcome, reason))
                continue
            if outcome in GUARD_REFUSALS:
                r = self.gate.refusal(cid, c.user, outcome, reason, claim_id)
                answers.append(Answer(outcome, reason, retry_after_ms=r.retry_after_ms,
                                      challenge=r.challenge))
                continue
            if outcome is not Outcome.OK:
                answers.append(refused(outcome, reason))
                continue
            views = [self._view(_Found(cid, rows[j], records.COUPON.decode(rows[j + 1]),
                                       _template(rows[j + 2])), c.user, int(at))
                     for j in range(0, len(rows), 3) if rows[j + 1]]
            if reason == "held":  # a paid voucher: held until paid (at: its deadline)
                answers.append(Answer(outcome, "", CouponClaimView(
                    claim_id=claim_id, campaign_id=campaign, sku=c.sku, qty=c.qty, coupons=[],
                    status="held", hold_deadline=from_ms(int(at)))))
                continue
            answers.append(Answer(outcome, "", CouponClaimView(  # a code claim's SKU: reason
                claim_id=claim_id, campaign_id=campaign, sku=reason or c.sku, qty=c.qty,
                coupons=views)))
        self.gate.note(cid, int(reply[-1]), claims, answers)
        return answers

    # -- reading -------------------------------------------------------------

    async def _lookup(self, cid: str, mode: str, names: Sequence[str]) -> list[_Found | None]:
        if not names:
            return []
        reply = await self.scripts.run("coupon_lookup", [*keys.coupon_keys(cid)], [mode, *names])
        out: list[_Found | None] = []
        for i in range(1, len(reply), 3):
            cpn, raw, spec = reply[i:i + 3]
            out.append(_Found(cid, cpn, records.COUPON.decode(raw), _template(spec))
                       if raw and spec else None)
        return out

    def _view(self, f: _Found, viewer: str, now_ms: int) -> CouponView:
        r = f.record
        shown: CouponStatus
        if r.owner != viewer:
            shown = "transferred"
        elif r.status == "active" and now_ms >= r.vt:
            shown = "expired"
        else:
            shown = r.status  # type: ignore[assignment]
        t = f.template
        return CouponView(
            coupon_id=f.coupon_id, campaign_id=keys.shard_of_id(f.cid)[0], template=r.tpl,
            kind=t.kind,
            status=shown, face_value=t.face_value, threshold=t.threshold, percent=t.percent,
            item=t.item, uses_left=r.uses, uses=t.uses, valid_from=from_ms(r.vf),
            valid_to=from_ms(r.vt), claimed_at=from_ms(r.claimed),
            transferable=t.transferable,
            code=self.keys.static(r.loc) if shown == "active" else None)

    async def wallet(self, user: str, status: str | None = None) -> list[CouponView]:
        """The user's coupons in every drop (those given away show as transferred)."""
        _check(keys.valid_user_id(user), "user id is not valid")
        drops = sorted(cast(set[str], await self.redis.smembers(keys.COUPON_DROPS)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in drops:
                pipe.smembers(keys.wallet_key(cid, user))
            held = await pipe.execute()
        views: list[CouponView] = []
        for cid, ids in zip(drops, held, strict=True):
            if not ids:
                continue
            now = int(time.time() * 1000)
            for f in await self._lookup(cid, "id", sorted(ids)):
                if f is not None:
                    views.append(self._view(f, user, now))
        views.sort(key=lambda v: (v.claimed_at, v.coupon_id))
        return [v for v in views if status is None or v.status == status]

    async def _owned(self, coupon_id: str, user: str) -> _Found | None:
        """The coupon if `user` owns or owned it, else None (not_found)."""
        cid = keys.campaign_of_claim(coupon_id)
        if cid is None or not keys.valid_user_id(user):
            return None
        found = (await self._lookup(cid, "id", [coupon_id]))[0]
        if found is None:
            return None
        if found.record.owner != user and not await self.redis.sismember(
                keys.wallet_key(cid, user), coupon_id):
            return None
        return found

    async def coupon(self, coupon_id: str, user: str) -> CouponView | None:
        found = await self._owned(coupon_id, user)
        return None if found is None else self._view(found, user, int(time.time() * 1000))

    async def rotating_code(self, coupon_id: str, user: str) -> Answer:
        """The till code of an active coupon of the user, valid for this step and the next."""
        found = await self._owned(coupon_id, user)
        if found is None:
            return Answer(Outcome.NOT_FOUND)
        view = self._view(found, user, int(time.time() * 1000))
        if view.status != "active":
            return Answer(Outcome.CONFLICT, view.status)
        step = int(time.time() * 1000) // codes.STEP_MS
        return Answer(Outcome.OK, "", RotatingCode(
            coupon_id=coupon_id, code=self.keys.rotating(found.record.loc, step),
            expires_at=from_ms((step + 2) * codes.STEP_MS)))

    # -- redemption ----------------------------------------------------------

    async def _resolve(self, code: str) -> tuple[codes.Parsed, str] | None:
        parsed = self.keys.verify(code, int(time.time() * 1000))
        if parsed is None:
            return None
        cid = await self._cid_of_drop(parsed.drop)
        return None if cid is None else (parsed, cid)

    async def drop_of_code(self, code: str) -> str | None:
        """The drop a genuine code belongs to (None for anything else)."""
        found = await self._resolve(code)
        return None if found is None else found[1]

    async def redeem(self, merchant: Merchant, req: RedemptionRequest) -> Answer:
        """Redeem `req.code` for an order at `merchant`: scope, cart lines, stacking,
        threshold, discount here; status, validity, time windows, the template's
        revision, the merchant's cap and the use in the script (a live template
        change in between: priced again)."""
        amount = order_total(req)
        for _ in range(3):
            answer = await self._redeem_once(merchant, req, amount)
            if answer.reason != "template":
                return answer
        return answer

    async def _redeem_once(self, merchant: Merchant, req: RedemptionRequest,
                           amount: int) -> Answer:
        main = await self._resolve(req.code)
        if main is None:
            return Answer(Outcome.NOT_FOUND, "bad_code")
        others = [await self._resolve(c) for c in req.codes_also_used]
        if any(o is None for o in others):
            return Answer(Outcome.CONFLICT, "unknown_also_used")
        resolved = [main] + [o for o in others if o is not None]
        locators = [p.locator for p, _ in resolved]
        if len(set(locators)) != len(locators):
            return Answer(Outcome.INVALID, "duplicate_code")
        parsed, cid = main
        (first,) = await self.with_rules(cid, "loc", [parsed.locator])  # with its rules
        found: list[_Found | None] = [None if first is None else first[0]]
        for p, other_cid in resolved[1:]:  # few codes per order: one read each
            found += await self._lookup(other_cid, "loc", [p.locator])
        if first is None:
            return Answer(Outcome.NOT_FOUND, "bad_code")
        if any(f is None for f in found):
            return Answer(Outcome.CONFLICT, "unknown_also_used")
        coupons = [f for f in found if f is not None]
        this, rules_now = first
        others_t = {loc: f.template for loc, f in zip(locators[1:], coupons[1:], strict=True)}
        best = pricing.pick_revision(rules_now, this.record,
                                     lambda t: in_scope(t, merchant), amount, req.lines,
                                     parsed.locator, others_t)
        # as before cart rules: merchant scope, then stacking, then the order's fit
        if best == "merchant_scope":
            return Answer(Outcome.CONFLICT, best)
        if not discount.stacks([f.template for f in coupons]):
            return Answer(Outcome.CONFLICT, "stacking")
        if isinstance(best, str):
            return Answer(Outcome.CONFLICT, best)
        off, per_line, spans = best
        fingerprint_text = f"{amount}|{sorted(locators[1:])}"
        if req.lines is not None:
            fingerprint_text += "|" + _json.encode(req.lines).decode()
        fingerprint = hashlib.sha1(fingerprint_text.encode()).hexdigest()[:16]
        reply = await self.scripts.run("coupon_redeem", [*keys.coupon_keys(cid)], [
            parsed.locator, this.tid, merchant.merchant_id, req.order_id, amount, off,
            -1 if parsed.step is None else parsed.step, codes.STEP_MS,
            keys.new_claim_id(cid), fingerprint, rules_now.rev, spans,
            "" if req.lines is None else _json.encode(
                [[x.item, x.category, x.qty, x.amount, d]
                 for x, d in zip(req.lines, per_line, strict=True)]).decode()])
        outcome = OUTCOMES[int(reply[0])]
        if outcome is not Outcome.OK:
            return refused(outcome, reply[1])
        _, replayed, rid, coupon_id, off_done, uses, status, ts = reply
        lines = None
        if req.lines is not None and int(off_done) == off:  # a replay priced alike
            lines = [LineDiscount(item=line.item, category=line.category, qty=line.qty,
                                  amount=line.amount, discount=d)
                     for line, d in zip(req.lines, per_line, strict=True)]
        return Answer(outcome, replayed, RedemptionView(
            redemption_id=rid, coupon_id=coupon_id, merchant_id=merchant.merchant_id,
            order_id=req.order_id, order_amount=amount, discount=int(off_done),
            status=status, uses_left=int(uses), redeemed_at=from_ms(int(ts)), lines=lines))

    async def with_rules(self, cid: str, mode: str, names: Sequence[str]
                         ) -> list[tuple[_Found, TemplateRules] | None]:
        """Coupons of a drop by locator or id, each with its template's rules (spec,
        revision, replaced revisions, the drop's zone) and the scripts' clock: one call."""
        reply = await self.scripts.run("coupon_rules_lookup", [*keys.coupon_keys(cid)],
                                       [mode, *names])
        now, tz = int(reply[0]), str(reply[1])
        out: list[tuple[_Found, TemplateRules] | None] = []
        for i in range(2, len(reply), 5):
            cpn, raw, spec, rev, hist = reply[i:i + 5]
            if not raw or not spec:
                out.append(None)
                continue
            t = _template(spec)
            out.append((_Found(cid, cpn, records.COUPON.decode(raw), t),
                        TemplateRules(t, str(rev), pricing.history(str(hist)), tz, now)))
        return out

    async def rollback(self, redemption_id: str, merchant_id: str) -> Answer:
        """Undo a redemption (a refund) once; again answers OK with `reason` 'replayed'."""
        cid = keys.campaign_of_claim(redemption_id)
        if cid is None:
            return Answer(Outcome.NOT_FOUND)
        code, _status, _coupon, _uses, already = await self.scripts.run(
            "coupon_rollback", [*keys.coupon_keys(cid)], [redemption_id, merchant_id])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            return Answer(outcome)
        return Answer(outcome, "replayed" if int(already) else "",
                      await self.redemption(redemption_id, merchant_id))

    async def redemption(self, redemption_id: str, merchant_id: str) -> RedemptionView | None:
        cid = keys.campaign_of_claim(redemption_id)
        if cid is None:
            return None
        drop = keys.coupon_keys(cid).drop
        raw = cast(str | None, await self.redis.hget(drop.redeems, redemption_id))
        if raw is None:
            return None
        r = records.REDEMPTION.decode(raw)
        if r.merchant != merchant_id:
            return None
        coupon = records.COUPON.decode(cast(str, await self.redis.hget(drop.cpn, r.coupon)))
        return RedemptionView(redemption_id=redemption_id, coupon_id=r.coupon,
                              merchant_id=r.merchant, order_id=r.order, order_amount=r.amount,
                              discount=r.discount, status=r.status,  # type: ignore[arg-type]
                              uses_left=coupon.uses, redeemed_at=from_ms(r.ts))

    # -- coupon rules: qualification and live changes ---------------------------

    async def qualify(self, user: str, lines: Sequence[CartLine]) -> QualifyView:
        """Each active coupon of the user's wallet on this cart alone: its discount,
        or why it does not fit (merchant scope is the till's: not judged here)."""
        _check(keys.valid_user_id(user), "user id is not valid")
        drops = sorted(cast(set[str], await self.redis.smembers(keys.COUPON_DROPS)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in drops:
                pipe.smembers(keys.wallet_key(cid, user))
            held = await pipe.execute()
        amount = sum(line.amount for line in lines)
        out: list[Qualification] = []
        for cid, ids in zip(drops, held, strict=True):
            if not ids:
                continue
            priced: dict[tuple[str, int], pricing.PickedRevision] = {}
            for got in await self.with_rules(cid, "id", sorted(ids)):
                if got is not None and got[0].record.owner == user \
                        and got[0].record.status == "active":
                    out.append(pricing.qualification(got[0].coupon_id, cid, got[0].record,
                                                     got[1], amount, lines, priced))
        out.sort(key=lambda q: (not q.fits, -q.discount, q.coupon_id))
        return QualifyView(cart_amount=amount, coupons=out)

    async def patch_drop(self, cid: str, patch: CouponDropPatch, actor: str) -> Answer:
        """A live change of a drop's caps and templates, one script run and one event
        (changes.py says what issued coupons make of it). The view: CouponDropPatched."""
        _check(keys.valid_campaign_id(cid), "campaign id is not valid")
        n = await self.shards.count(cid)
        if n is None or n <= 1:
            return await self._patch_shard(cid, patch, actor)
        sharded.check_patch(patch)
        answers = []
        for k in range(n):  # each shard in turn, each atomically (as a campaign patch)
            answer = await self._patch_shard(keys.shard_id(cid, k, n), patch, actor)
            if answer.outcome is not Outcome.OK:
                return answer
            answers.append(answer)
        views = [cast(CouponDropPatched, a.view) for a in answers]
        return Answer(Outcome.OK, "", CouponDropPatched(
            campaign_id=cid, changed=views[0].changed,
            coupons_extended=sum(v.coupons_extended for v in views)))

    async def _patch_shard(self, cid: str, patch: CouponDropPatch, actor: str) -> Answer:
        meta = keys.campaign_keys(cid).meta
        for _ in range(10):  # read, change, write if no other change came between
            answer = await self._patch_once(cid, meta, patch, actor)
            if answer.reason != "precondition":
                return answer
        raise UnavailableError("the drop's templates changed concurrently too often; retry")

    async def _patch_once(self, cid: str, meta: str, patch: CouponDropPatch,
                          actor: str) -> Answer:
        tids = sorted(patch.templates)
        current = await self.redis.hmget(meta, "coupons", *(f"cp_spec:{t}" for t in tids),
                                         *(f"cp_rev:{t}" for t in tids))
        if current[0] != "1":
            return Answer(Outcome.NOT_FOUND, "no_drop")
        pairs: list[str] = []
        grow: dict[str, dict[str, int]] = {}
        for tid, raw, rev in zip(tids, current[1:1 + len(tids)], current[1 + len(tids):],
                                 strict=True):
            if raw is None:
                return Answer(Outcome.NOT_FOUND, "no_template", view=tid)
            new, growth = changes.patched(tid, _template(raw), patch.templates[tid])
            templates.check_template(tid, new)
            if growth:
                grow[tid] = growth
            pairs += [f"if:cp_rev:{tid}", str(rev or "")]
            pairs += [x for kv in templates.template_meta(tid, new).items() for x in kv]
        for name, value in (("cp_per_day", patch.per_day),
                            ("cp_user_day", patch.per_user_per_day),
                            ("cp_mcap", patch.merchant_daily_cap)):
            if value is not msgspec.UNSET:
                pairs += [name, str(-1 if value is None else value)]
        code, reason, _before, after, _extended = await self.scripts.run(
            "coupon_patch", [*keys.coupon_keys(cid)],
            [actor, _json.encode(grow).decode(), ",".join(tids), *pairs])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            return Answer(outcome, reason)
        extended = await self.extend_validity(cid) if grow else 0
        return Answer(outcome, "", CouponDropPatched(
            campaign_id=cid, changed=sorted(_merchant_decoder.decode(after)),
            coupons_extended=extended))

    # -- gifting -------------------------------------------------------------

    async def offer_gift(self, coupon_id: str, user: str, ttl_ms: int = GIFT_TTL_MS) -> Answer:
        """A single-use transfer token for the owner's transferable coupon."""
        cid = keys.campaign_of_claim(coupon_id)
        if cid is None or not keys.valid_user_id(user):
            return Answer(Outcome.NOT_FOUND)
        # The token names the campaign (a sharded drop's shard is found on acceptance).
        token = f"{keys.shard_of_id(cid)[0]}.{secrets.token_hex(16)}"
        code, reason, expires = await self.scripts.run(
            "coupon_gift_offer", [*keys.coupon_keys(cid)], [coupon_id, user,
                                                            _token_hash(token), ttl_ms])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            return refused(outcome, reason)
        return Answer(outcome, "", GiftOffer(coupon_id=coupon_id, transfer_token=token,
                                             expires_at=from_ms(int(expires))))

    async def accept_gift(self, token: str, user: str) -> Answer:
        m = _TOKEN.match(token)
        if m is None or not keys.valid_user_id(user):
            return Answer(Outcome.NOT_FOUND)
        cid = await self._gift_shard(m.group(1), _token_hash(token))
        code, reason, coupon_id = await self.scripts.run(
            "coupon_gift_accept", [*keys.coupon_keys(cid), keys.wallet_key(cid, user)],
            [_token_hash(token), user, codes.new_seed(), secrets.token_hex(8)])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            return refused(outcome, reason)
        return Answer(outcome, "", await self.coupon(coupon_id, user))

    async def _gift_shard(self, cid: str, token_hash: str) -> str:
        """The shard of a sharded drop that holds the gift (the giver's: the coupon
        stays there, in the recipient's wallet of that shard); `cid` if not sharded."""
        n = await self.shards.count(cid)
        if n is None or n <= 1:
            return cid
        ids = [keys.shard_id(cid, k, n) for k in range(n)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for scid in ids:
                pipe.hexists(keys.coupon_keys(scid).drop.gifts, token_hash)
            found = await pipe.execute()
        return next((scid for scid, f in zip(ids, found, strict=True) if f), cid)

    # -- housekeeping and stats ---------------------------------------------

    async def expire(self, cid: str) -> int:
        """Expire the coupons of one drop whose validity has ended (first finishing a
        validity extension left pending, say by a crash during its patch)."""
        await self.extend_validity(cid)
        total = 0
        while True:
            n, more = await self.scripts.run("coupon_expire", [*keys.coupon_keys(cid)],
                                             [self.settings.sweep_batch])
            total += int(n)
            if not int(more):
                return total

    async def extend_validity(self, cid: str, batch: int | None = None) -> int:
        """Apply the drop's pending validity extensions (coupon_patch.lua queues them),
        `batch` coupons a script call: Redis serves other clients between calls, however
        large the drop. Resumable and idempotent. The coupons extended."""
        total = 0
        while True:
            n, more = await self.scripts.run("coupon_extend", [*keys.coupon_keys(cid)],
                                             [batch or EXTEND_BATCH])
            total += int(n)
            if not int(more):
                return total

    async def stats(self, cid: str) -> CouponStats | None:
        if not keys.valid_campaign_id(cid):
            return None
        n = await self.shards.count(cid)
        ids = [cid] if n is None or n <= 1 else [keys.shard_id(cid, k, n) for k in range(n)]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.campaign_keys(cid).meta, "coupons", "cp_budget")
            for scid in ids:  # a sharded drop's counters: the shards added up
                pipe.hgetall(keys.coupon_keys(scid).drop.cstats)
            meta, *raw = await pipe.execute()
        return stats_from(cid, meta, raw[0] if len(raw) == 1 else sharded.merged_cstats(raw))

    # -- merchants -----------------------------------------------------------

    async def put_merchant(self, merchant_id: str, spec: MerchantSpec) -> MerchantCredentials:
        """Register (or re-register) a merchant; a new token each time, stored hashed."""
        _check(bool(_MERCHANT.match(merchant_id)), "merchant id is not valid")
        token = f"{merchant_id}.{secrets.token_urlsafe(32)}"
        record = {"name": spec.name, "groups": spec.groups, "region": spec.region,
                  "token_sha256": hashlib.sha256(token.encode()).hexdigest()}
        await self.redis.hset(keys.MERCHANTS, merchant_id, _json.encode(record).decode())
        return MerchantCredentials(merchant_id=merchant_id, name=spec.name, groups=spec.groups,
                                   region=spec.region, token=token)

    async def remove_merchant(self, merchant_id: str) -> bool:
        """Revoke a merchant's token (its redemptions stay). False if there was none."""
        return bool(await self.redis.hdel(keys.MERCHANTS, merchant_id))

    async def merchant(self, token: str) -> Merchant | None:
        """The merchant a bearer token belongs to, compared in constant time."""
        merchant_id, sep, _ = token.rpartition(".")
        if not sep or not _MERCHANT.match(merchant_id):
            return None
        raw = await self.redis.hget(keys.MERCHANTS, merchant_id)
        if raw is None:
            return None
        record = _merchant_decoder.decode(raw)
        given = hashlib.sha256(token.encode()).hexdigest()
        if not hmac.compare_digest(given, record["token_sha256"]):
            return None
        return Merchant(merchant_id, record["name"], tuple(record["groups"]), record["region"])


_MERCHANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def in_scope(t: TemplateSpec, m: Merchant) -> bool:
    """May this merchant redeem a coupon of this template?"""
    if m.merchant_id in t.blocked_merchants:
        return False
    if t.merchants is not None and m.merchant_id not in t.merchants:
        return False
    if t.partner_group is not None and t.partner_group not in m.groups:
        return False
    return t.regions is None or (m.region is not None and m.region in t.regions)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValidationError(message)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _totals(c: dict[str, int]) -> CouponTotals:
    kept = c.get("redeemed", 0) - c.get("rolled_back", 0)
    uses = c.get("uses", 0)
    return CouponTotals(issued=c.get("issued", 0), face_value_issued=c.get("value", 0),
                        redeemed=c.get("redeemed", 0), discount_granted=c.get("discount", 0),
                        rolled_back=c.get("rolled_back", 0),
                        discount_rolled_back=c.get("discount_rolled_back", 0),
                        expired=c.get("expired", 0), transferred=c.get("transferred", 0),
                        redemption_rate=round(kept / uses, 4) if uses else 0.0)


def _day_iso(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


def stats_from(cid: str, meta: list[str | None], raw: dict[str, str]) -> CouponStats | None:
    """A drop's stats from its meta (`coupons`, `cp_budget`) and cstats hash; None if the
    campaign is no drop. (Also read by the console's feed, in its own pipeline.)"""
    if meta[0] != "1":
        return None
    scopes: dict[str, dict[str, int]] = {}
    for entry, value in raw.items():
        scope, _, name = entry.rpartition("|")
        scopes.setdefault(scope, {})[name] = int(value)
    budget = None if meta[1] in (None, "-1") else int(meta[1])
    totals = _totals(scopes.get("*", {}))

    def part(prefix: str) -> dict[str, CouponTotals]:
        return {s[len(prefix):]: _totals(v) for s, v in sorted(scopes.items())
                if s.startswith(prefix)}
    days = {_day_iso(int(d)): v for d, v in part("d:").items()}
    return CouponStats(campaign_id=cid, budget=budget,
                       budget_left=None if budget is None
                       else budget - totals.face_value_issued,
                       totals=totals, templates=part("t:"), merchants=part("m:"), days=days)
