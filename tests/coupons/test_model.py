"""Random sequences of coupon operations agree with a pure-Python model.

Claims (per-user limit, stock, budget), claims with a promo code (right or
wrong: the per-code limit, the wrong-code limiter), referral codes minted and
used (two accounts share one person, one account has no identity: own
referrals and second referrals refused; the referrer's reward), points
exchanges against a real loopback points service (balances, a key used
again, replies lost), paid vouchers (a claim holds the unit and its face value,
a payment issues, the same payment again answers again, another is refused, a
hold lapses at the clock's next step, an unused voucher is refunded once and a
used or expired one is not), redemptions
(by the current code or a dead one), rollbacks (twice), gift offers and
acceptances, and the clock
moving in 6-hour steps against 1- and 2-day validities (so the real time the
test takes never crosses a boundary), with expiry sweeps. After every step
each user's wallet and the drop's totals must equal the model's.
"""

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from stampede import Engine, Outcome, Settings
from stampede.domain.coupons.service import Merchant
from stampede.domain.coupons.spec import MerchantSpec, RedemptionRequest
from stampede.durable.points_client import HttpPoints
from tests.conftest import iso
from tests.coupons.helpers import drop_spec
from tests.coupons.points_service import PointsService, points_service

USERS = ["u0", "u1", "u2"]
STEP_MS = 6 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
TEMPLATES = {"five": {"kind": "fixed_off", "face_value": 500, "valid_days": 1,
                      "transferable": True},
             "pack": {"kind": "pack", "face_value": 300, "item": "tea", "uses": 2,
                      "valid_days": 2},
             "promo": {"kind": "fixed_off", "face_value": 100, "valid_days": 2},
             "friend": {"kind": "fixed_off", "face_value": 150, "valid_days": 2},
             "bonus": {"kind": "fixed_off", "face_value": 50, "valid_days": 2},
             "mug": {"kind": "exchange", "item": "mug", "face_value": 200, "valid_days": 2},
             "latte": {"kind": "pack", "face_value": 250, "item": "latte", "uses": 2,
                       "valid_days": 2}}
VALUE = {"five": 500, "pack": 600, "promo": 100, "friend": 150, "bonus": 50, "mug": 200,
         "latte": 500}
LATTE_PRICE, HOLD_MS = 1200, 600_000  # paid vouchers: the SKU's price, the drop's hold TTL
MUG_POINTS = 300
IDENTITY = {"u0": "p0", "u1": "p1", "u2": "p0", "friend": None}  # u0 and u2: one person
PROMO_PER_USER, WRONG_PER_HOUR = 1, 3
BUDGET = 3500
_ids = itertools.count()


@dataclass
class Coupon:
    coupon_id: str
    tpl: str
    owner: str
    uses: int
    claimed: int
    code: str
    dead_codes: list[str]
    status: str = "active"

    @property
    def valid_to(self) -> int:
        return self.claimed + (DAY_MS if self.tpl == "five" else 2 * DAY_MS)

    def expired_at(self, now: int) -> bool:
        return now >= self.valid_to


@dataclass
class Hold:
    """A paid voucher's claim: held, paid (its coupon), lapsed or refunded."""
    claim_id: str
    user: str
    deadline: int
    status: str = "held"
    payment: str = ""
    coupon: Coupon | None = None


class CouponMachine(RuleBasedStateMachine):
    def __init__(self, redis_url: str, settings: Settings | None = None) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = Engine.from_url(redis_url, settings or Settings())
        self.run(self.engine.start())
        self.run(self.engine.redis.flushall())  # wallets span drops: start each example clean
        self.cid = f"cm-{next(_ids)}"
        spec = drop_spec(
            stock=5, per_user=3, templates=TEMPLATES, budget=BUDGET,
            campaign={"closes_at": iso(30 * 86_400), "hold_ttl_s": HOLD_MS // 1000},
            promo_codes={"SAVE10": {"sku": "promo", "per_user": PROMO_PER_USER}},
            referral={"sku": "friend", "referrer_sku": "bonus"},
            wrong_codes={"per_hour": WRONG_PER_HOUR}, points={"mug": MUG_POINTS},
            paid=["latte"])
        next(s for s in spec.skus if s.sku == "latte").price = LATTE_PRICE
        self.run(self.engine.define_campaign(self.cid, spec))
        self._points_cm = points_service()
        self.points: PointsService = self.run(self._points_cm.__aenter__())
        self.points.balances.update(u0=1000, u1=300, u2=0)
        self.engine.coupons.points = HttpPoints(self.points.url, timeout_s=2)
        self.exchanges: dict[tuple[str, str], Any] = {}
        """(user, key) -> the first answer of that exchange"""
        creds = self.run(self.engine.coupons.put_merchant("m1", MerchantSpec(name="m1")))
        merchant = self.run(self.engine.coupons.merchant(creds.token))
        assert merchant is not None
        self.merchant: Merchant = merchant
        self.now = 0
        self.coupons: list[Coupon] = []
        self.units = dict.fromkeys(USERS, 0)
        self.stock = dict.fromkeys(TEMPLATES, 5)
        self.wrong = dict.fromkeys(IDENTITY, 0)
        """wrong codes since the clock last moved (6 h: every limiter is fresh again)"""
        self.promo_used = dict.fromkeys(IDENTITY, 0)
        self.ref_codes: dict[str, str] = {}
        self.referred: set[str] = set()
        self.referred_people: set[str] = set()
        self.value = 0
        self.holds: list[Hold] = []
        self.redemptions: list[tuple[str, Coupon, bool]] = []  # id, coupon, rolled back
        self.offers: list[tuple[str, Coupon, bool, int]] = []  # token, coupon, usable, until
        self.orders = itertools.count()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        if self.engine.coupons.points is not None:
            self.run(self.engine.coupons.points.close())
        self.run(self._points_cm.__aexit__(None, None, None))
        self.run(self.engine.close())
        self.loop.close()

    @property
    def held_value(self) -> int:
        """Face value of the unpaid holds: kept from the budget until paid or lapsed."""
        return sum(VALUE["latte"] for h in self.holds if h.status == "held")

    def _lapse(self, h: Hold) -> None:
        h.status = "lapsed"
        self.units[h.user] -= 1
        self.stock["latte"] += 1

    # -- paid vouchers ------------------------------------------------------------

    @rule(user=st.sampled_from(USERS))
    def buy_voucher(self, user: str) -> None:
        r = self.run(self.engine.coupons.claim(self.cid, user, "latte"))
        if self.units[user] + 1 > 3:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "per_user"), r
        elif self.stock["latte"] < 1:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "stock"), r
        elif self.value + self.held_value + VALUE["latte"] > BUDGET:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "budget"), r
        else:
            assert r.outcome is Outcome.OK and r.view.status == "held", r
            assert r.view.coupons == []
            self.units[user] += 1
            self.stock["latte"] -= 1
            self.holds.append(Hold(r.view.claim_id, user, self.now + HOLD_MS))

    @rule(user=st.sampled_from(USERS))
    def buy_pay_refund(self, user: str) -> None:
        """The whole story in one step (else a refund of a paid voucher is rare)."""
        before = len(self.holds)
        self.buy_voucher(user)
        if len(self.holds) > before:
            self._pay(self.holds[-1], "pay1")
            self._refund(self.holds[-1])

    @rule(data=st.data(), payment=st.sampled_from(["pay1", "pay2"]))
    def pay_voucher(self, data: st.DataObject, payment: str) -> None:
        if self.holds:
            self._pay(data.draw(st.sampled_from(self.holds)), payment)

    def _pay(self, h: Hold, payment: str) -> None:
        r = self.run(self.engine.coupons.paid.confirm(h.claim_id, h.user, payment))
        if h.status in ("paid", "refunded"):
            if payment == h.payment:
                assert r.outcome is Outcome.OK, r
                assert r.view.status == ("confirmed" if h.status == "paid" else "refunded")
            else:
                assert (r.outcome, r.reason) == (Outcome.CONFLICT, "voucher_paid_other"), r
            return
        if h.status == "lapsed":
            assert (r.outcome, r.reason) == (Outcome.HOLD_EXPIRED, "hold_expired"), r
            return
        assert r.outcome is Outcome.OK, r
        (coupon_id,) = r.view.coupons
        (v,) = [c for c in self.run(self.engine.coupons.wallet(h.user))
                if c.coupon_id == coupon_id]
        h.status, h.payment = "paid", payment
        self.value += VALUE["latte"]
        h.coupon = Coupon(coupon_id, "latte", h.user, v.uses_left, self.now, v.code or "", [])
        self.coupons.append(h.coupon)

    @rule(data=st.data())
    def refund_voucher(self, data: st.DataObject) -> None:
        if self.holds:
            self._refund(data.draw(st.sampled_from(self.holds)))

    def _refund(self, h: Hold) -> None:
        r = self.run(self.engine.coupons.paid.refund(h.claim_id, h.user, h.user))
        if h.status == "refunded":
            assert r.outcome is Outcome.OK and r.view.refunded_amount == LATTE_PRICE
            return
        if h.status != "paid":
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "voucher_unpaid"), r
            return
        c = h.coupon
        assert c is not None
        if c.status != "active" or c.uses != 2 or c.owner != h.user:
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "voucher_used"), r
            return
        assert r.outcome is Outcome.OK and r.view.refunded_amount == LATTE_PRICE, r
        h.status, c.status = "refunded", "refunded"
        self.value -= VALUE["latte"]

    def _expire(self) -> None:
        for c in self.coupons:
            if c.status == "active" and c.expired_at(self.now):
                c.status = "expired"

    @rule(user=st.sampled_from(USERS), sku=st.sampled_from(["five", "pack"]))
    def claim(self, user: str, sku: str) -> None:
        r = self.run(self.engine.coupons.claim(self.cid, user, sku))
        if self.units[user] + 1 > 3:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "per_user")
            assert r.params == {"limit": 3, "held": self.units[user]}
        elif self.stock[sku] < 1:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "stock")
        elif self.value + self.held_value + VALUE[sku] > BUDGET:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "budget")
        else:
            assert r.outcome is Outcome.OK, r
            (v,) = r.view.coupons
            self.units[user] += 1
            self.stock[sku] -= 1
            self.value += VALUE[sku]
            self.coupons.append(Coupon(v.coupon_id, sku, user, v.uses_left, self.now, v.code,
                                       []))

    def _issued(self, r: Any, user: str, sku: str) -> None:
        (v,) = r.view.coupons
        self.units[user] += 1
        self.stock[sku] -= 1
        self.value += VALUE[sku]
        self.coupons.append(Coupon(v.coupon_id, sku, user, v.uses_left, self.now, v.code, []))

    @rule(user=st.sampled_from(list(IDENTITY)), right=st.booleans())
    def claim_promo(self, user: str, right: bool) -> None:
        r = self.run(self.engine.coupons.claim(self.cid, user, "",
                                               code="save-10" if right else "SAVE11"))
        self.units.setdefault(user, 0)
        if self.wrong[user] >= WRONG_PER_HOUR:
            assert (r.outcome, r.reason) == (Outcome.THROTTLED, "code"), r
        elif not right:
            assert (r.outcome, r.reason) == (Outcome.NOT_FOUND, "no_code"), r
            self.wrong[user] += 1
        elif self.units[user] + 1 > 3:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "per_user"), r
        elif self.promo_used[user] + 1 > PROMO_PER_USER:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "code_per_user"), r
        elif self.stock["promo"] < 1:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "stock"), r
        elif self.value + self.held_value + VALUE["promo"] > BUDGET:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "budget"), r
        else:
            assert r.outcome is Outcome.OK and r.view.sku == "promo", r
            self.promo_used[user] += 1
            self._issued(r, user, "promo")

    @rule(user=st.sampled_from(list(IDENTITY)))
    def mint_referral_code(self, user: str) -> None:
        r = self.run(self.engine.coupons.referral_code(self.cid, user, IDENTITY[user]))
        if user in self.ref_codes:
            assert r.outcome is Outcome.OK and r.view.code == self.ref_codes[user]
            assert not r.view.created
        elif IDENTITY[user] is None:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "identity_required")
        else:
            assert r.outcome is Outcome.OK and r.view.created
            self.ref_codes[user] = r.view.code

    @rule(friend=st.sampled_from(list(IDENTITY)), referrer=st.sampled_from(USERS))
    def refer(self, friend: str, referrer: str) -> None:
        self._refer(friend, referrer)

    @rule(referrer=st.sampled_from(USERS))
    def refer_one_person_twice(self, referrer: str) -> None:
        """u0 and u2 are one person: once one of them is referred, the other is not."""
        self.mint_referral_code(referrer)
        self._refer("u0", referrer)
        self._refer("u2", referrer)

    def _refer(self, friend: str, referrer: str) -> None:
        if referrer not in self.ref_codes:
            return
        person = IDENTITY[friend]
        r = self.run(self.engine.coupons.claim(self.cid, friend, "",
                                               code=self.ref_codes[referrer], identity=person))
        self.units.setdefault(friend, 0)
        if self.wrong[friend] >= WRONG_PER_HOUR:
            assert (r.outcome, r.reason) == (Outcome.THROTTLED, "code"), r
        elif self.units[friend] + 1 > 3:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "per_user"), r
        elif person is None:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "identity_required"), r
        elif friend == referrer or person == IDENTITY[referrer]:
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "own_referral"), r
        elif friend in self.referred or person in self.referred_people:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "referral_used"), r
        elif self.units[referrer] + 1 > 3:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "referrer_limit"), r
        elif self.stock["bonus"] < 1 or self.stock["friend"] < 1:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "stock"), r
        elif self.value + self.held_value + VALUE["friend"] + VALUE["bonus"] > BUDGET:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "budget"), r
        else:
            assert r.outcome is Outcome.OK and r.view.sku == "friend", r
            self._issued(r, friend, "friend")
            self.referred.add(friend)
            self.referred_people.add(person)
            reward = [v for v in self.run(self.engine.coupons.wallet(referrer))
                      if v.template == "bonus" and v.campaign_id == self.cid
                      and v.coupon_id not in {c.coupon_id for c in self.coupons}]
            assert len(reward) == 1
            self.units[referrer] += 1
            self.stock["bonus"] -= 1
            self.value += VALUE["bonus"]
            v = reward[0]
            self.coupons.append(Coupon(v.coupon_id, "bonus", referrer, v.uses_left, self.now,
                                       v.code or "", []))

    @rule(user=st.sampled_from(USERS), key=st.sampled_from(["k1", "k2", "k3"]),
          lose=st.integers(0, 3))
    def exchange(self, user: str, key: str, lose: int) -> None:
        """Pay a mug in points; a key used again is the same exchange; `lose` replies
        are lost (3: the service never answers, and the app tries again at once)."""
        first = self.exchanges.get((user, key))
        # The service is asked unless the claim ran before (its answer is remembered).
        asks = first is None or first.reason == "points_refused"
        self.points.lose_replies = lose
        balance = self.points.balances[user]
        r = self.run(self.engine.coupons.claim(self.cid, user, "mug", idempotency_key=key))
        if lose >= 3 and asks:
            assert (r.outcome, r.reason) == (Outcome.FENCED, "points_unavailable"), r
            r = self.run(self.engine.coupons.claim(self.cid, user, "mug", idempotency_key=key))
        self.points.lose_replies = 0
        if first is not None:  # the same exchange: the same answer, no new debit
            assert (r.outcome, r.reason) == (first.outcome, first.reason), r
            if r.outcome is Outcome.OK:  # the same claim and coupons (their status may differ)
                assert r.view.claim_id == first.view.claim_id
                assert [c.coupon_id for c in r.view.coupons] == \
                    [c.coupon_id for c in first.view.coupons]
            assert self.points.balances[user] == balance
            return
        self.exchanges[(user, key)] = r
        if balance < MUG_POINTS:
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "points_refused"), r
        elif self.units[user] + 1 > 3:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "per_user"), r
        elif self.stock["mug"] < 1:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "stock"), r
        elif self.value + self.held_value + VALUE["mug"] > BUDGET:
            assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "budget"), r
        else:
            assert r.outcome is Outcome.OK, r
            self._issued(r, user, "mug")
            assert self.points.balances[user] == balance - MUG_POINTS
            return
        assert self.points.balances[user] == balance  # refused or refunded: nothing spent

    @rule(data=st.data(), dead=st.booleans())
    def redeem(self, data: st.DataObject, dead: bool) -> None:
        if not self.coupons:
            return
        c = data.draw(st.sampled_from(self.coupons))
        if dead and not c.dead_codes:
            return
        code = c.dead_codes[0] if dead else c.code
        r = self.run(self.engine.coupons.redeem(self.merchant, RedemptionRequest(
            code=code, order_id=f"o{next(self.orders)}", order_amount=1000)))
        if dead:
            assert (r.outcome, r.reason) == (Outcome.NOT_FOUND, "bad_code")
            return
        if c.status == "active" and c.expired_at(self.now):
            c.status = "expired"  # the redemption finds it expired and says so
        if c.status != "active":
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, c.status), r
            return
        assert r.outcome is Outcome.OK, r
        c.uses -= 1
        c.status = "used" if c.uses == 0 else "active"
        assert r.view.uses_left == c.uses
        self.redemptions.append((r.view.redemption_id, c, False))

    @rule(data=st.data())
    def rollback(self, data: st.DataObject) -> None:
        if not self.redemptions:
            return
        i = data.draw(st.integers(0, len(self.redemptions) - 1))
        rid, c, done = self.redemptions[i]
        r = self.run(self.engine.coupons.rollback(rid, "m1"))
        assert r.outcome is Outcome.OK and (r.reason == "replayed") == done
        if not done:
            c.uses += 1
            if c.status == "used":
                c.status = "active"
            if c.status == "active" and c.expired_at(self.now):
                c.status = "expired"
            self.redemptions[i] = (rid, c, True)

    @rule(data=st.data())
    def offer(self, data: st.DataObject) -> None:
        if not self.coupons:
            return
        c = data.draw(st.sampled_from(self.coupons))
        r = self.run(self.engine.coupons.offer_gift(c.coupon_id, c.owner))
        if c.status == "active" and c.expired_at(self.now):
            c.status = "expired"
        if c.tpl != "five":
            assert r.reason == "not_transferable"
        elif c.status != "active":
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, c.status)
        else:
            assert r.outcome is Outcome.OK
            self.offers = [(t, o, ok and o is not c, u) for t, o, ok, u in self.offers]
            self.offers.append((r.view.transfer_token, c, True,
                                min(self.now + DAY_MS, c.valid_to)))

    @rule(data=st.data(), to=st.sampled_from(USERS + ["friend"]))
    def accept(self, data: st.DataObject, to: str) -> None:
        if not self.offers:
            return
        i = data.draw(st.integers(0, len(self.offers) - 1))
        token, c, usable, until = self.offers[i]
        r = self.run(self.engine.coupons.accept_gift(token, to))
        if not usable:
            assert r.outcome is not Outcome.OK
            return
        if self.now >= until:
            assert r.reason == "gift_expired"
            return
        if to == c.owner:
            assert r.reason == "own_gift"
            return
        if c.status == "active" and c.expired_at(self.now):
            assert r.outcome is Outcome.CONFLICT
            return
        if c.status != "active":
            assert r.reason == "gift_void"
            return
        assert r.outcome is Outcome.OK, r
        c.owner = to
        c.dead_codes.append(c.code)
        c.code = r.view.code
        self.offers[i] = (token, c, False, until)

    @rule(steps=st.integers(1, 3))
    def advance_clock(self, steps: int) -> None:
        self.now += steps * STEP_MS
        self.run(self.engine.set_clock_offset(self.cid, self.now))
        self.run(self.engine.sweep(self.cid))
        self._expire()
        for h in self.holds:  # the sweep lapses every hold past its deadline
            if h.status == "held" and self.now >= h.deadline:
                self._lapse(h)
        self.wrong = dict.fromkeys(IDENTITY, 0)

    @invariant()
    def agrees_with_model(self) -> None:
        for user in USERS + ["friend"]:
            wallet = self.run(self.engine.coupons.wallet(user))
            mine = {v.coupon_id: (v.status, v.uses_left) for v in wallet
                    if v.status != "transferred" and v.campaign_id == self.cid}
            expected = {c.coupon_id: (c.status, c.uses) for c in self.coupons if c.owner == user}
            assert mine == expected
        stats = self.run(self.engine.coupons.stats(self.cid))
        assert stats and stats.totals.issued == len(self.coupons)
        assert stats.totals.face_value_issued == self.value <= BUDGET - self.held_value
        kept = sum(1 for _, _, done in self.redemptions if not done)
        assert stats.totals.redeemed - stats.totals.rolled_back == kept


def test_coupons_agree_with_model(clean_redis: str) -> None:
    run_state_machine_as_test(
        lambda: CouponMachine(clean_redis),
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))
