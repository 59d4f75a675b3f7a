"""Random sequences of sale operations agree with a pure-Python model.

Claim, retry (same Idempotency-Key, or the same batch replayed as redis-py
would after a lost reply), confirm, cancel, expiry (the campaign clock moves
in 30 s steps against 100 s holds, so real time elapsed in the test never
crosses a boundary), stock adjustments, pauses, staged waves, presale
access phases (claimants of tiers vip, member or none; the phases patched
away and back) and price steps on SKU a (by units taken, by tier): each
hold's price and each SKU's revenue must be the model's too; refunds
(operator, buyer and intruder; whole or some units) and door check-ins of
the campaign's tickets at two gates (refunded tickets refused, a second
scan answering where the first admitted), and transfers (the claim
re-issued to its recipient, whose limits, per-person too, apply; a refund
or a transfer gives the units back to the buyer's person); each admission grants the
holder a coupon pack of a drop exactly once, and ops grant packs to segments
(a key retried grants nobody twice); the real-name per_person limit (users
u0 and u1 are one person, u2 and u3 another, and u4 carries no identity);
allocations of SKU b (2 units for channel app, 1 for tier vip, returned by
ops at random) with claims through app or no channel; bundle claims of
both SKUs at once (all or nothing, every line checked; settled by the
bundle's id or a line's, each line then refunded, checked in or
transferred on its own) and of the spec's bundles by name. Live patches:
the phases to another shape, price steps of either SKU, b's allocations
(a qty changed, one left out so it returns, the order turned, a new one;
refused below what holds and sales took or over b's units) and the spec's
bundles, and the per-user limit (refused while a bundle in force would
take more). After every
step the engine's counters, per-user totals and claim statuses must equal
the model's, and the invariants must hold.
"""

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from stampede import Engine, Outcome, Settings
from stampede.domain import bundles
from stampede.domain.batcher import PendingClaim
from stampede.domain.coupons.codes import STEP_MS as CODE_STEP_MS
from stampede.domain.models import (
    BundleLine,
    CampaignPatch,
    CampaignSpec,
    LimitsPatch,
    PackGrant,
)
from stampede.domain.refunds import RefundRequest
from stampede.domain.tickets import Scan, Scanner, ticket_code
from stampede.durable.events import from_entry
from stampede.durable.projection import Fold
from stampede.errors import ValidationError
from stampede.state import keys, records
from tests.coupons.helpers import FIVE_OFF, drop_spec
from tests.domain.model import SaleModel

USERS = ["u0", "u1", "u2", "u3", "u4"]
PERSONS = {"u0": "hA", "u1": "hA", "u2": "hB", "u3": "hB", "u4": ""}
PER_PERSON = 4
CHANNELS = ["", "app"]
ALLOCS = [("app", ("app",), None, 2), ("vip", None, ("vip",), 1)]
SKUS = ["a", "b"]
TIERS = [(), ("vip",), ("member",), ("member", "other")]
# Presale phases: vip from the start, members at +75 s, everyone at +135 s
# (halfway between clock steps, like the waves).
PHASES = [(-30_000, ("vip",)), (75_000, ("member",)), (135_000, None)]
# Price steps of SKU a: the first 3 units taken at 80, then members at 90, else 100.
STEPS = [(80, 3, None), (90, None, ("member",))]
# Live patches: other shapes of the phases (members first, then vip; no public sale),
# of SKU a's or b's price steps, of b's allocations (qty changed, one left out so it
# returns, the order turned, a new one) and of the spec's bundles.
PHASES_ALT = [(-30_000, ("member",)), (75_000, ("vip",))]
STEP_SHAPES = [STEPS, [], [(70, None, ("vip",)), (85, 4, None)],
               [(60, 2, ("member",)), (75, 5, None), (95, None, None)]]
ALLOC_SHAPES = [ALLOCS, [("app", ("app",), None, 1), ("vip", None, ("vip",), 2)],
                [("vip", None, ("vip",), 1), ("app", ("app",), None, 3)],
                [("app", ("app",), None, 2)],
                [("app", ("app",), None, 1), ("members", None, ("member",), 2)], [],
                [("app", ("app",), None, 6)]]  # (refused once b's units are fewer)
STEP_MS = 30_000
LINES = [(("a", 1), ("b", 1)), (("b", 2), ("a", 1)), (("a", 2),), (("a", 1), ("b", 2))]
BUNDLES = {"pair": (("a", 1), ("b", 1))}
BUNDLE_NAMES = ["pair", "trio", "solo"]
HOLD_TTL_MS = 100_000
_ids = itertools.count()


class SaleMachine(RuleBasedStateMachine):
    def __init__(self, redis_url: str, settings: Settings | None = None) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = Engine.from_url(redis_url, settings or Settings())
        self.run(self.engine.start())
        self.cid = f"model-{next(_ids)}"
        now = datetime.now(UTC)
        # Waves fall halfway between clock steps: +45 s and +105 s.
        waves = {"a": [(0, 3), (45_000, 2)], "b": [(0, 2), (105_000, 4)]}
        spec = msgspec.convert({
            "name": "model", "opens_at": (now - timedelta(minutes=1)).isoformat(),
            "closes_at": (now + timedelta(days=1)).isoformat(), "hold_ttl_s": HOLD_TTL_MS // 1000,
            "limits": {"per_user": 3, "per_person": PER_PERSON},
            "tickets": {"venue": "arena"}, "transfers": {},
            "skus": [{"sku": s, "price": 100, "price_steps": [
                {"price": p, "first_units": u, "tiers": list(t) if t else None}
                for p, u, t in STEPS] if s == "a" else [],
                "allocations": [{"name": n, "qty": q, "channels": ch and list(ch),
                                 "tiers": t and list(t)} for n, ch, t, q in ALLOCS]
                if s == "b" else [], "waves": [
                {"at": (now + timedelta(milliseconds=at - 1000 * (at == 0))).isoformat(),
                 "qty": q} for at, q in waves[s]]} for s in SKUS],
            "phases": self.phase_specs(now),
            "bundles": {n: {"lines": [{"sku": k, "qty": q} for k, q in lines]}
                        for n, lines in BUNDLES.items()}}, CampaignSpec)
        self.drop = f"{self.cid}-fans"
        self.run(self.engine.define_campaign(self.drop, drop_spec(
            stock=10_000, templates={"five": FIVE_OFF, "ten": {**FIVE_OFF, "face_value": 900}},
            packs={"welcome": ["five", "ten"]}, skus=("welcome",))))
        spec.on_checkin = PackGrant(drop=self.drop, sku="welcome")
        self.run(self.engine.define_campaign(self.cid, spec))
        self.grant_keys: set[tuple[str, str]] = set()
        self.model = SaleModel(HOLD_TTL_MS, 3, {s: [0, 0, 0, 0] for s in SKUS},
                               [(at, s, q) for s in SKUS for at, q in waves[s]],
                               phases=self.model_phases(),
                               price_steps={"a": [(p, u, frozenset(t) if t else None)
                                                  for p, u, t in STEPS]},
                               per_person=PER_PERSON,
                               allocations={"b": self.model_allocations(ALLOCS)},
                               alloc_qty={"b": {n: q for n, _, _, q in ALLOCS}},
                               spec_bundles={n: list(lines) for n, lines in BUNDLES.items()})
        self.start = now
        self.model.tick()
        self.requests: list[tuple[PendingClaim, Outcome, str | None]] = []
        self.bundle_requests: list[tuple[PendingClaim, Outcome, str | None]] = []

    @staticmethod
    def phase_specs(now: datetime, shape: list[Any] = PHASES) -> list[dict[str, Any]]:
        return [{"name": f"p{i}", "opens_at": (now + timedelta(milliseconds=at)).isoformat(),
                 "tiers": list(tiers) if tiers else None} for i, (at, tiers) in enumerate(shape)]

    @staticmethod
    def model_phases(shape: list[Any] = PHASES) -> list[tuple[int, frozenset[str] | None]]:
        return [(at, frozenset(t) if t else None) for at, t in shape]

    @staticmethod
    def model_allocations(shape: list[Any]) -> list[list[Any]]:
        return [[n, frozenset(ch) if ch else None, frozenset(t) if t else None, q]
                for n, ch, t, q in shape]

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.engine.close())
        self.loop.close()

    @rule(user=st.sampled_from(USERS), sku=st.sampled_from(SKUS), qty=st.integers(1, 3),
          key=st.sampled_from([None, "k0", "k1", "k2"]), tiers=st.sampled_from(TIERS),
          channel=st.sampled_from(CHANNELS))
    def claim(self, user: str, sku: str, qty: int, key: str | None,
              tiers: tuple[str, ...], channel: str) -> None:
        pending = PendingClaim(keys.new_claim_id(self.cid), user, sku, qty, key, tiers=tiers,
                               identity=PERSONS[user], channel=channel)
        result = self.run(self.engine._claim_batch(self.cid, [pending]))[0]
        expected, expected_id = self.model.claim(pending.claim_id, user, sku, qty, key, tiers,
                                                 PERSONS[user], channel)
        assert result.outcome is expected
        got_id = result.claim.claim_id if result.claim else None
        assert got_id == expected_id
        if result.claim and expected_id in self.model.claims:
            assert result.claim.price == self.model.claims[expected_id].price
        self.requests.append((pending, result.outcome, got_id))

    @rule(user=st.sampled_from(USERS), lines=st.sampled_from(LINES),
          key=st.sampled_from([None, "k0", "k1", "k2"]), tiers=st.sampled_from(TIERS),
          channel=st.sampled_from(CHANNELS))
    def claim_bundle(self, user: str, lines: tuple[tuple[str, int], ...], key: str | None,
                     tiers: tuple[str, ...], channel: str) -> None:
        bundle_id = keys.new_claim_id(self.cid)
        pending = bundles.PendingBundle(bundle_id, user, "", 0, key, tiers=tiers,
                                        identity=PERSONS[user], channel=channel,
                                        lines=lines)
        result = self.run(self.engine._bundle_batch(self.cid, [pending]))[0]
        line_ids = [bundles.line_id(bundle_id, i) for i in range(1, len(lines) + 1)]
        expected, expected_id, line = self.model.claim_bundle(
            bundle_id, line_ids, user, list(lines), key, tiers, PERSONS[user], channel)
        self._agree_on_bundle(pending, result, expected, expected_id, line, "bundle")

    @rule(user=st.sampled_from(USERS), name=st.sampled_from(BUNDLE_NAMES),
          key=st.sampled_from([None, "k0", "k1", "k2"]),
          tiers=st.sampled_from([("vip",), *TIERS]),  # (vip: open from the start)
          channel=st.sampled_from(CHANNELS))
    def claim_spec_bundle(self, user: str, name: str, key: str | None,
                          tiers: tuple[str, ...], channel: str) -> None:
        """A bundle of the spec by name, as the live patches left it."""
        bundle_id = keys.new_claim_id(self.cid)
        pending = bundles.PendingBundle(bundle_id, user, "", 0, key, tiers=tiers,
                                        identity=PERSONS[user], channel=channel, name=name)
        result = self.run(self.engine._bundle_batch(self.cid, [pending]))[0]
        line_ids = [bundles.line_id(bundle_id, i) for i in range(1, 9)]
        expected, expected_id, line = self.model.claim_bundle(
            bundle_id, line_ids, user, [], key, tiers, PERSONS[user], channel, name=name)
        self._agree_on_bundle(pending, result, expected, expected_id, line, "spec bundle")

    def _agree_on_bundle(self, pending: bundles.PendingBundle, result: Any, expected: Outcome,
                         expected_id: str | None, line: Any, label: str) -> None:
        """The script's answer to a bundle is the model's: outcome, line, id and prices."""
        assert (result.outcome, result.line) == (expected, line)
        got_id = result.claim.claim_id if result.claim else None
        assert got_id == expected_id
        if result.claim and expected_id in self.model.bundles:
            assert result.claim.lines and [x.price for x in result.claim.lines] == \
                [self.model.claims[i].price for i in self.model.bundles[expected_id]]
        self.bundle_requests.append((pending, result.outcome, got_id))
        event(f"{label}: {result.outcome.name}")

    @rule(data=st.data())
    def replay_lost_bundle(self, data: st.DataObject) -> None:
        """A bundle batch again, as redis-py retries it: the first answer, no change."""
        held = [r for r in self.bundle_requests if r[1] is Outcome.OK]
        if not held:
            return
        pending, _, first_id = data.draw(st.sampled_from(held))
        result = self.run(self.engine._bundle_batch(self.cid, [pending]))[0]
        assert result.outcome is Outcome.OK and result.claim
        assert result.claim.claim_id == first_id

    @rule(data=st.data(), confirm=st.booleans(), by_line=st.booleans())
    def settle_bundle(self, data: st.DataObject, confirm: bool, by_line: bool) -> None:
        if not self.model.bundles:
            return
        bundle_id = data.draw(st.sampled_from(list(self.model.bundles)))
        lines = self.model.bundles[bundle_id]
        claim_id = lines[-1] if by_line else bundle_id
        user = self.model.claims[lines[0]].user
        op = self.engine.confirm if confirm else self.engine.cancel
        result = self.run(op(claim_id, user))
        assert result.outcome is self.model.settle(claim_id, user, confirm)

    @rule(data=st.data())
    def replay_lost_reply(self, data: st.DataObject) -> None:
        """The same batch again, as redis-py retries it: the first answer, no change."""
        held = [r for r in self.requests if r[1] is Outcome.OK]
        if not held:
            return
        pending, _, first_id = data.draw(st.sampled_from(held))
        result = self.run(self.engine._claim_batch(self.cid, [pending]))[0]
        assert result.outcome is Outcome.OK and result.claim
        assert result.claim.claim_id == first_id

    @rule(data=st.data(), confirm=st.booleans(), wrong_user=st.booleans())
    def settle(self, data: st.DataObject, confirm: bool, wrong_user: bool) -> None:
        if not self.model.claims:
            return
        # In the order they were made: the same draw must pick the same claim when
        # hypothesis replays a sequence (the ids themselves are random each run).
        claim_id = data.draw(st.sampled_from(list(self.model.claims)))
        user = self.model.claims[claim_id].user
        if wrong_user:
            user = "intruder"
        op = self.engine.confirm if confirm else self.engine.cancel
        result = self.run(op(claim_id, user))
        assert result.outcome is self.model.settle(claim_id, user, confirm)

    @rule(user=st.sampled_from(USERS), sku=st.sampled_from(SKUS), qty=st.integers(1, 3),
          tiers=st.sampled_from(TIERS))
    def buy(self, user: str, sku: str, qty: int, tiers: tuple[str, ...]) -> None:
        """Claim and confirm at once: sold claims for the refunds to find."""
        self.claim(user, sku, qty, None, tiers, "")
        claim_id = self.requests[-1][2]
        if claim_id is not None:
            result = self.run(self.engine.confirm(claim_id, user))
            assert result.outcome is self.model.settle(claim_id, user, True)

    @rule(data=st.data(), qty=st.sampled_from([None, 1, 2]),
          who=st.sampled_from(["ops", "buyer", "intruder"]))
    def refund(self, data: st.DataObject, qty: int | None, who: str) -> None:
        if not self.model.claims:
            return
        # Sold claims first (else a refund would rarely find one), in their order.
        sold = [c for c, m in self.model.claims.items() if m.status in ("confirmed", "refunded")]
        claim_id = data.draw(st.sampled_from((sold or list(self.model.claims))
                                             + list(self.model.bundles)))  # (whole)
        owner = self.model.claims[self.model.bundles.get(claim_id, [claim_id])[0]].user
        buyer = {"ops": None, "buyer": owner, "intruder": "intruder"}[who]
        result = self.run(self.engine.refunds.refund(claim_id, RefundRequest(qty=qty), "ops",
                                                     buyer=buyer))
        assert result.outcome is self.model.refund(claim_id, qty, buyer)
        event(f"refund by {who}: {result.outcome.name}")

    @rule(data=st.data(), unit=st.integers(1, 3), gate=st.sampled_from(["north", "south"]))
    def check_in(self, data: st.DataObject, unit: int, gate: str) -> None:
        if not self.model.claims:
            return
        sold = [c for c, m in self.model.claims.items() if m.status in ("confirmed", "refunded")]
        claim_id = data.draw(st.sampled_from(sold or list(self.model.claims)))
        step = int(time.time() * 1000) // CODE_STEP_MS
        code = ticket_code(self.engine.tickets.code_keys, f"{claim_id}-{unit}", step)
        got, = self.run(self.engine.tickets.check_in(Scanner("s", "arena", gate),
                                                     [Scan(code=code)]))
        assert (got.verdict, got.gate) == self.model.check_in(claim_id, unit, gate)
        event(f"check-in: {got.verdict}")

    @rule(data=st.data(), recipient=st.sampled_from(USERS), intruder=st.booleans(),
          unit=st.sampled_from([0, 0, 1, 2, 3]))
    def transfer(self, data: st.DataObject, recipient: str, intruder: bool,
                 unit: int) -> None:
        """The whole claim (unit 0) or one of its tickets alone."""
        if not self.model.claims:
            return
        sold = [c for c, m in self.model.claims.items() if m.status == "confirmed"]
        claim_id = data.draw(st.sampled_from(sold or list(self.model.claims)))
        giver = "intruder" if intruder else self.model.claims[claim_id].user
        expected = self.model.transfer(claim_id, giver, recipient, PERSONS[recipient], unit)
        token = f"{self.cid}.{next(_ids):032x}"
        offer = self.run(self.engine.transfers.offer(claim_id, giver, token, unit))
        if offer.outcome is not Outcome.OK:
            assert (offer.outcome, offer.reason) == expected
            return
        taken = self.run(self.engine.transfers.accept(token, recipient,
                                                      PERSONS[recipient] or None))
        assert (taken.outcome, taken.reason or "") == expected
        if taken.new_claim_id:
            self.model.transferred(claim_id, taken.new_claim_id, recipient, PERSONS[recipient],
                                   unit)
        kind = "one ticket" if unit else "claim"
        event(f"transfer ({kind}): {taken.outcome.name} {taken.reason or ''}")

    @rule(users=st.lists(st.sampled_from(USERS), min_size=1, max_size=4),
          key=st.sampled_from(["g0", "g1"]))
    def grant(self, users: list[str], key: str) -> None:
        """Ops grant the drop's pack to a segment (a key retried grants nobody twice)."""
        self.run(self.engine.grants.grant(self.drop, "welcome", users, key, "ops:model"))
        self.model.grant(users, key, self.grant_keys)

    @rule(steps=st.integers(1, 4))
    def advance_clock(self, steps: int) -> None:
        self.model.now += steps * STEP_MS
        self.run(self.engine.set_clock_offset(self.cid, self.model.now))
        self.model.tick()
        self.run(self.engine.sweep(self.cid))

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-3, 5).filter(bool))
    def adjust_stock(self, sku: str, delta: int) -> None:
        outcome, _ = self.run(self.engine.adjust_stock(self.cid, sku, delta, "ops"))
        assert outcome is self.model.adjust(sku, delta)

    @rule(paused=st.booleans())
    def pause_or_resume(self, paused: bool) -> None:
        patch = CampaignPatch(state="paused" if paused else "open")
        assert self.run(self.engine.patch_campaign(self.cid, patch, "ops")) is Outcome.OK
        self.model.paused = paused

    def patched(self, patch: CampaignPatch, accepted: bool) -> None:
        """Send a PATCH the model accepts (OK) or refuses (400, nothing changed)."""
        if accepted:
            assert self.run(self.engine.patch_campaign(self.cid, patch, "ops")) is Outcome.OK
        else:
            with pytest.raises(ValidationError):
                self.run(self.engine.patch_campaign(self.cid, patch, "ops"))
        event(f"patch {'accepted' if accepted else 'refused'}")

    @rule(limit=st.integers(1, 4))
    def change_limit(self, limit: int) -> None:
        """Refused when a bundle in force would take more than the limit."""
        fits = all(self.model.bundle_fits(b, limit) for b in self.model.spec_bundles.values())
        self.patched(CampaignPatch(limits=LimitsPatch(per_user=limit)), fits)
        if fits:
            self.model.per_user = limit

    @rule(shape=st.sampled_from([None, "default", "alt"]))
    def patch_phases(self, shape: str | None) -> None:
        """Phases patched away (everyone may claim), back, or to another shape, live."""
        phases = {None: [], "default": PHASES, "alt": PHASES_ALT}[shape]
        patch = msgspec.convert({"phases": self.phase_specs(self.start, phases)}, CampaignPatch)
        self.patched(patch, True)
        self.model.phases = self.model_phases(phases)

    @rule(sku=st.sampled_from(SKUS), shape=st.sampled_from(range(len(STEP_SHAPES))))
    def patch_price_steps(self, sku: str, shape: int) -> None:
        """A SKU's price steps replaced live: holds keep the price they locked."""
        steps = STEP_SHAPES[shape]
        patch = msgspec.convert({"price_steps": {sku: [
            {"price": p, "first_units": u, "tiers": list(t) if t else None}
            for p, u, t in steps]}}, CampaignPatch)
        self.patched(patch, True)
        self.model.price_steps[sku] = [(p, u, frozenset(t) if t else None) for p, u, t in steps]

    @rule(shape=st.sampled_from(range(len(ALLOC_SHAPES))))
    def patch_allocations(self, shape: int) -> None:
        """SKU b's allocations replaced live: one listed again keeps what was taken from
        it, one left out returns its units to the shared pool, a returned one stays so."""
        allocs = ALLOC_SHAPES[shape]
        patch = msgspec.convert({"allocations": {"b": [
            {"name": n, "qty": q, "channels": ch and list(ch), "tiers": t and list(t)}
            for n, ch, t, q in allocs]}}, CampaignPatch)
        self.patched(patch, self.model.patch_allocations("b", self.model_allocations(allocs)))

    @rule(name=st.sampled_from(BUNDLE_NAMES),
          lines=st.sampled_from([None, *LINES]))
    def patch_bundles(self, name: str, lines: tuple[tuple[str, int], ...] | None) -> None:
        """A spec bundle added, replaced or removed live (refused over the per-user or
        per-person limit: no claim of it could pass)."""
        raw = None if lines is None else {"lines": [{"sku": k, "qty": q} for k, q in lines]}
        fits = lines is None or self.model.bundle_fits(list(lines), self.model.per_user)
        self.patched(msgspec.convert({"bundles": {name: raw}}, CampaignPatch), fits)
        if fits and lines is None:
            self.model.spec_bundles.pop(name, None)
        elif fits and lines is not None:
            self.model.spec_bundles[name] = list(lines)

    @rule(name=st.sampled_from([n for n, *_ in ALLOCS]))
    def return_allocation(self, name: str) -> None:
        outcome, _, units = self.run(self.engine.return_allocation(self.cid, "b", name, "ops"))
        assert (outcome, units) == self.model.return_allocation("b", name)

    @invariant()
    def agrees_with_model(self) -> None:
        stats = self.run(self.engine.stats(self.cid))
        for s in stats.skus:
            assert [s.available, s.held, s.sold, s.released] == self.model.stock[s.sku]
            assert s.available >= 0 and s.available + s.held + s.sold == s.released
            assert s.revenue == self.model.revenue.get(s.sku, 0)
        users = self.run(self.engine.redis.hgetall(keys.campaign_keys(self.cid).users))
        for user in USERS:
            assert sum(records.decode_units(users.get(user)).values()) == \
                self.model.user_total(user)
        for person in ("hA", "hB"):
            assert int(users.get(f"~p|{person}", 0)) == self.model.person_total(person)
        meta = self.run(self.engine.redis.hgetall(keys.campaign_keys(self.cid).meta))
        reserved = {a[0]: a[3] for a in self.model.allocations["b"]} | \
            self.model.alloc_gone.get("b", {})
        assert reserved == {n: int(meta[f"al:b:{n}"]) for n in reserved}
        assert [p.split("/")[0] for p in meta["al:b"].split(";") if p] == \
            [a[0] for a in self.model.allocations["b"]]
        assert bundles.decode(meta.get("bd", "")) == {
            n: [BundleLine(sku=k, qty=q) for k, q in lines]
            for n, lines in self.model.spec_bundles.items()}
        stored = self.run(self.engine.redis.hgetall(keys.campaign_keys(self.cid).claims))
        assert {cid: records.CLAIM.decode(raw).status for cid, raw in stored.items()} == \
            {cid: c.status for cid, c in self.model.claims.items()}
        for user in USERS:  # each pack is two coupons in the drop's wallet
            wallet = self.run(self.engine.redis.scard(keys.wallet_key(self.drop, user)))
            assert wallet == 2 * self.model.packs.get(user, 0)
        tickets = self.run(self.engine.redis.hgetall(keys.tickets_key(self.cid)))
        decoded = {t: records.TICKET.decode(raw) for t, raw in tickets.items()}
        assert {t: r.status if r.status in ("refunded", "moved") else f"in:{r.gate}"
                for t, r in decoded.items()} == self.model.tickets
        # the events say the same: the store's projection of the stream (a bundle's hold
        # one event carrying its lines) has every SKU's counters and every claim
        fold = Fold(campaign={"epoch": 0}, skus={})
        for entry_id, fields in self.run(self.engine.redis.xrange(
                keys.campaign_keys(self.cid).events)):
            fold.apply(from_entry(self.cid, entry_id, fields))
        assert {sku: [c["available"], c["held"], c["sold"], c["released"]]
                for sku, c in fold.skus.items()} == {sku: self.model.stock[sku] for sku in SKUS}
        assert set(fold.new_claims) == set(self.model.claims)


def test_engine_agrees_with_model(clean_redis: str) -> None:
    run_state_machine_as_test(
        lambda: SaleMachine(clean_redis),
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))
