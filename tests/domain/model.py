"""A small pure-Python model of the sale rules, for the stateful property test.

Time is the campaign's clock offset in ms; the engine reads the same offset
on top of server time, so both see a wave or a deadline pass together.
"""

from dataclasses import dataclass, field
from typing import Any

from stampede import Outcome


@dataclass
class ModelClaim:
    user: str
    sku: str
    qty: int
    deadline: int
    status: str = "held"
    price: int = 100
    person: str = ""
    took: list[tuple[str, int]] = field(default_factory=list)
    """From the SKU's allocations: (name, units)."""


@dataclass
class SaleModel:
    hold_ttl: int
    per_user: int
    stock: dict[str, list[int]]
    """sku -> [available, held, sold, released]"""
    waves: list[tuple[int, str, int]]
    now: int = 0
    paused: bool = False
    claims: dict[str, ModelClaim] = field(default_factory=dict)
    idem: dict[tuple[str, str], tuple[str, Outcome, str | None]] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    """claim -> units refunded (after-sale)"""
    tickets: dict[str, str] = field(default_factory=dict)
    """ticket -> "in:<gate>" or "refunded": the tickets that are no longer plain valid"""
    packs: dict[str, int] = field(default_factory=dict)
    """user -> coupon packs granted to them on check-in (or by ops)"""
    phases: list[tuple[int, frozenset[str] | None]] = field(default_factory=list)
    """Presale access phases in order of opening: (opens, tiers or None for everyone)."""
    price_steps: dict[str, list[tuple[int, int | None, frozenset[str] | None]]] = \
        field(default_factory=dict)
    """Presale price steps by SKU: (price, first_units, tiers), the first match wins."""
    base_price: int = 100
    revenue: dict[str, int] = field(default_factory=dict)
    per_person: int | None = None
    """Presales: units one real person (identity) may hold or have bought."""
    allocations: dict[str, list[list[Any]]] = field(default_factory=dict)
    """Presales: sku -> [name, channels or None, tiers or None, reserved (-1 returned)]."""
    bundles: dict[str, list[str]] = field(default_factory=dict)
    """Presales: bundle claim -> its line claims (each a claim in `claims`)."""
    alloc_qty: dict[str, dict[str, int]] = field(default_factory=dict)
    """Presales: sku -> each listed allocation's qty as defined or last patched."""
    alloc_gone: dict[str, dict[str, int]] = field(default_factory=dict)
    """Presales: sku -> allocations a PATCH left out (returned: -1), by name."""
    spec_bundles: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    """Presales: the spec's bundles in force, by name: their lines (sku, qty)."""

    def patch_allocations(self, sku: str, new: list[list[Any]]) -> bool:
        """A PATCH replacing the SKU's allocations ([name, channels, tiers, qty] each), as
        patch_campaign.lua makes it; False: refused (a qty below what holds and sales
        took, or more reserved than the SKU's units available or to come), no change."""
        old = {a[0]: a for a in self.allocations[sku]}
        gone = self.alloc_gone.setdefault(sku, {})
        qtys = self.alloc_qty.setdefault(sku, {})
        listed = []
        for name, channels, tiers, qty in new:
            if name in gone or (name in old and old[name][3] < 0):
                reserve = -1  # returned: its units stay in the shared pool
            elif name in old:
                taken = qtys[name] - old[name][3]
                if qty < taken:
                    return False
                reserve = qty - taken
            else:
                reserve = qty
            listed.append([name, channels, tiers, reserve])
        units = self.stock[sku][0] + sum(q for _, s, q in self.waves if s == sku)
        if sum(a[3] for a in listed if a[3] > 0) > units:
            return False
        names = {a[0] for a in listed}
        for name in old:
            if name not in names:
                gone[name] = -1
        for name in names:
            gone.pop(name, None)
        self.allocations[sku] = listed
        self.alloc_qty[sku] = {name: qty for name, _, _, qty in new}
        return True

    def bundle_fits(self, lines: list[tuple[str, int]], per_user: int) -> bool:
        """A bundle a claim could pass: within the per-user and per-person limits."""
        units = sum(q for _, q in lines)
        return units <= per_user and (self.per_person is None or units <= self.per_person)

    def take(self, sku: str, qty: int, channel: str,
             tiers: tuple[str, ...]) -> list[tuple[str, int]] | None:
        """Allocations of the claimant's channel or tiers first, then the shared pool."""
        allocs, available = self.allocations[sku], self.stock[sku][0]
        mine = [a for a in allocs if a[3] > 0 and (a[1] is None or channel in a[1])
                and (a[2] is None or a[2] & set(tiers))]
        shared = max(0, available - sum(a[3] for a in allocs if a[3] > 0))
        if qty > available or qty > sum(a[3] for a in mine) + shared:
            return None
        took, left = [], qty
        for a in mine:
            n = min(a[3], left)
            if n:
                took.append((a[0], n))
            left -= n
        return took

    def return_allocation(self, sku: str, name: str) -> tuple[Outcome, int]:
        for a in self.allocations[sku]:
            if a[0] == name:
                if a[3] < 0:
                    return Outcome.CONFLICT, 0
                units, a[3] = a[3], -1
                return Outcome.OK, units
        return Outcome.NOT_FOUND, 0

    def price(self, sku: str, qty: int, tiers: tuple[str, ...]) -> int:
        taken = self.stock[sku][1] + self.stock[sku][2] + qty
        for price, units, audience in self.price_steps.get(sku, []):
            if (units is None or taken <= units) and \
                    (audience is None or audience & set(tiers)):
                return price
        return self.base_price

    def phase_refusal(self, tiers: tuple[str, ...]) -> Outcome | None:
        """NOT_ELIGIBLE or NOT_OPEN unless the claimant's earliest phase has opened."""
        if not self.phases:
            return None
        for opens, audience in self.phases:
            if audience is None or audience & set(tiers):
                return None if self.now >= opens else Outcome.NOT_OPEN
        return Outcome.NOT_ELIGIBLE

    def tick(self) -> None:
        for wave in [w for w in self.waves if w[0] <= self.now]:
            self.stock[wave[1]][0] += wave[2]
            self.stock[wave[1]][3] += wave[2]
            self.waves.remove(wave)
        for c in self.claims.values():
            if c.status == "held" and self.now >= c.deadline:
                self._release(c, "expired")

    def _release(self, c: ModelClaim, status: str) -> None:
        self.stock[c.sku][1] -= c.qty
        self.stock[c.sku][0] += c.qty
        c.status = status
        for name, n in c.took:  # back to allocations not yet returned
            for a in self.allocations.get(c.sku, []):
                if a[0] == name and a[3] >= 0:
                    a[3] += n

    def moved(self, claim_id: str) -> int:
        """The claim's tickets transferred alone (no longer its own)."""
        c = self.claims[claim_id]
        return sum(self.tickets.get(f"{claim_id}-{i}") == "moved" for i in range(1, c.qty + 1))

    def own(self, claim_id: str) -> int:
        """The units still the claim's: bought, less refunded and moved out."""
        return self.claims[claim_id].qty - self.refunded.get(claim_id, 0) - self.moved(claim_id)

    def user_total(self, user: str) -> int:
        return sum(self.own(cid) for cid, c in self.claims.items()
                   if c.user == user and c.status in ("held", "confirmed"))

    def person_total(self, person: str) -> int:
        # (a release, a refund or a transfer gives the person's units back)
        return sum(self.own(cid) for cid, c in self.claims.items()
                   if c.person == person and c.status in ("held", "confirmed"))

    def claim(self, claim_id: str, user: str, sku: str, qty: int,
              key: str | None, tiers: tuple[str, ...] = (),
              person: str = "", channel: str = "") -> tuple[Outcome, str | None]:
        fp = f"{sku}:{qty}"
        if key is not None and (user, key) in self.idem:
            first_fp, outcome, first_id = self.idem[(user, key)]
            if first_fp != fp:
                return Outcome.IDEMPOTENCY_MISMATCH, None
            return outcome, first_id
        if self.paused:
            return Outcome.PAUSED, None
        refused = self.phase_refusal(tiers)
        if refused is not None:  # by state: not remembered
            return refused, None
        if self.user_total(user) + qty > self.per_user:
            outcome, cid = Outcome.LIMIT_EXCEEDED, None
        elif self.per_person is not None and not person:  # by state: not remembered
            return Outcome.LIMIT_EXCEEDED, None
        elif self.per_person is not None and \
                self.person_total(person) + qty > self.per_person:
            outcome, cid = Outcome.LIMIT_EXCEEDED, None
        elif self.stock[sku][0] < qty or (
                sku in self.allocations and self.take(sku, qty, channel, tiers) is None):
            outcome, cid = Outcome.SOLD_OUT, None
        else:
            took = self.take(sku, qty, channel, tiers) if sku in self.allocations else None
            for name, n in took or []:
                next(a for a in self.allocations[sku] if a[0] == name)[3] -= n
            price = self.price(sku, qty, tiers)
            self.stock[sku][0] -= qty
            self.stock[sku][1] += qty
            self.claims[claim_id] = ModelClaim(user, sku, qty, self.now + self.hold_ttl,
                                               price=price, person=person,
                                               took=took or [])
            outcome, cid = Outcome.OK, claim_id
        if key is not None:
            self.idem[(user, key)] = (fp, outcome, cid)
        return outcome, cid

    def claim_bundle(self, bundle_id: str, line_ids: list[str], user: str,
                     lines: list[tuple[str, int]], key: str | None,
                     tiers: tuple[str, ...] = (), person: str = "",
                     channel: str = "", name: str | None = None
                     ) -> tuple[Outcome, str | None, int | None]:
        """As claim_bundle.lua: (outcome, the bundle's id, the refused line). With
        `name`, a bundle of the spec as it is in force (its lines read then)."""
        fp = f"bundle:{name}" if name is not None else \
            "lines:" + ",".join(f"{sku}:{qty}" for sku, qty in lines)
        if key is not None and (user, key) in self.idem:
            first_fp, outcome, first_id = self.idem[(user, key)]
            if first_fp != fp:
                return Outcome.IDEMPOTENCY_MISMATCH, None, None
            return outcome, first_id, None
        if self.paused:
            return Outcome.PAUSED, None, None
        if name is not None:
            if name not in self.spec_bundles:  # by state: not remembered
                return Outcome.NOT_FOUND, None, None
            lines = self.spec_bundles[name]
        refused = self.phase_refusal(tiers)
        if refused is not None:
            return refused, None, None
        if self.per_person is not None and not person:
            return Outcome.LIMIT_EXCEEDED, None, None
        total, units = self.user_total(user), 0
        by_person = self.person_total(person) if self.per_person is not None else 0
        outcome: Outcome | None = None
        for i, (sku, qty) in enumerate(lines):
            units += qty
            if total + units > self.per_user or (
                    self.per_person is not None and by_person + units > self.per_person):
                outcome = Outcome.LIMIT_EXCEEDED
            elif self.stock[sku][0] < qty or (
                    sku in self.allocations and self.take(sku, qty, channel, tiers) is None):
                outcome = Outcome.SOLD_OUT
            if outcome is not None:
                if key is not None:
                    self.idem[(user, key)] = (fp, outcome, None)
                return outcome, None, i
        for line_id, (sku, qty) in zip(line_ids, lines, strict=False):
            took = self.take(sku, qty, channel, tiers) if sku in self.allocations else None
            for name, n in took or []:
                next(a for a in self.allocations[sku] if a[0] == name)[3] -= n
            price = self.price(sku, qty, tiers)
            self.stock[sku][0] -= qty
            self.stock[sku][1] += qty
            self.claims[line_id] = ModelClaim(user, sku, qty, self.now + self.hold_ttl,
                                              price=price, person=person, took=took or [])
        self.bundles[bundle_id] = line_ids[:len(lines)]
        if key is not None:
            self.idem[(user, key)] = (fp, Outcome.OK, bundle_id)
        return Outcome.OK, bundle_id, None

    def settle(self, claim_id: str, user: str, confirm: bool) -> Outcome:
        """Confirm or cancel a claim; a bundle's (by its id or a line's) every line."""
        lines = self.bundles.get(claim_id) or next(
            (ids for ids in self.bundles.values() if claim_id in ids), None)
        if lines is None:
            return self._settle(claim_id, user, confirm)
        addressed = claim_id if claim_id in lines else lines[0]
        first = self._settle(addressed, user, confirm)
        if first is Outcome.OK:
            for line in lines:  # the others still held go with it
                if line != addressed and self.claims[line].status == "held":
                    self._settle(line, user, confirm)
        return first

    def _settle(self, claim_id: str, user: str, confirm: bool) -> Outcome:
        c = self.claims.get(claim_id)
        if c is None or c.user != user:
            return Outcome.NOT_FOUND
        done = "confirmed" if confirm else "cancelled"
        if c.status == done:
            return Outcome.OK
        if c.status == "expired":
            return Outcome.HOLD_EXPIRED
        if c.status != "held":
            return Outcome.CONFLICT
        if confirm:
            self.stock[c.sku][1] -= c.qty
            self.stock[c.sku][2] += c.qty
            self.revenue[c.sku] = self.revenue.get(c.sku, 0) + c.price * c.qty
            c.status = done
        else:
            self._release(c, done)
        return Outcome.OK

    def adjust(self, sku: str, delta: int) -> Outcome:
        if self.stock[sku][0] + delta < 0:
            return Outcome.CONFLICT
        self.stock[sku][0] += delta
        self.stock[sku][3] += delta
        return Outcome.OK

    def refund(self, claim_id: str, qty: int | None, buyer: str | None) -> Outcome:
        """As refund.lua, for a campaign with the default policy: restock, and no
        buyer window (a buyer's refund of their own sold claim is refused). A bundle's
        id refunds every line whole, all checked first."""
        lines = self.bundles.get(claim_id)
        if lines is None:
            return self._refund(claim_id, qty, buyer, check=False)
        for line in lines:
            refused = self._refund(line, qty, buyer, check=True)
            if refused is not Outcome.OK:
                return refused
            if qty is not None:
                return Outcome.CONFLICT  # refund_bundle_units
        for line in lines:
            self._refund(line, None, buyer, check=False)
        return Outcome.OK

    def _refund(self, claim_id: str, qty: int | None, buyer: str | None,
                check: bool) -> Outcome:
        c = self.claims.get(claim_id)
        if c is None or (buyer is not None and c.user != buyer):
            return Outcome.NOT_FOUND
        if c.status == "confirmed" and self.own(claim_id) == 0:  # every ticket moved out
            return Outcome.CONFLICT
        if c.status == "refunded" and qty is None:
            return Outcome.OK
        if c.status not in ("confirmed", "refunded") or buyer is not None:
            return Outcome.CONFLICT
        left = self.own(claim_id)
        n = left if qty is None else qty
        if n > left:
            return Outcome.CONFLICT
        free = [i for i in range(c.qty, 0, -1) if f"{claim_id}-{i}" not in self.tickets][:n]
        if len(free) < n:  # the others are checked in
            return Outcome.CONFLICT
        if check:
            return Outcome.OK
        for i in free:
            self.tickets[f"{claim_id}-{i}"] = "refunded"
        self.stock[c.sku][2] -= n
        self.stock[c.sku][0] += n
        self.refunded[claim_id] = self.refunded.get(claim_id, 0) + n
        if n == left:
            c.status = "refunded"
        return Outcome.OK

    def check_in(self, claim_id: str, unit: int, gate: str) -> tuple[str, str | None]:
        """As checkin.lua: (verdict, the gate that admitted it)."""
        c = self.claims.get(claim_id)
        if c is None or unit > c.qty or c.status not in ("confirmed", "refunded"):
            return "not_found", None
        ticket = f"{claim_id}-{unit}"
        state = self.tickets.get(ticket)
        if state == "moved":  # transferred alone: its old code is dead
            return "not_found", None
        if c.status == "refunded" or state == "refunded":
            return "refunded", None
        if state is not None:
            return "checked_in", state[3:]
        self.tickets[ticket] = f"in:{gate}"
        self.packs[c.user] = self.packs.get(c.user, 0) + 1  # on_checkin: one pack
        return "admitted", gate

    def grant(self, users: list[str], key: str, keys_used: set[tuple[str, str]]) -> None:
        """Ops grant a pack to each user, once per (key, user)."""
        for user in users:
            if (key, user) not in keys_used:
                keys_used.add((key, user))
                self.packs[user] = self.packs.get(user, 0) + 1

    def transfer(self, claim_id: str, giver: str, recipient: str,
                 person: str = "", unit: int = 0) -> tuple[Outcome, str]:
        """As transfer_offer.lua then transfer_accept.lua (the campaign allows transfers
        and applies the recipient's limits): (outcome, reason). `unit` > 0: that
        ticket alone."""
        c = self.claims.get(claim_id)
        if c is None or c.user != giver:
            return Outcome.NOT_FOUND, "no_sale_ticket" if unit else "no_claim"
        if unit > c.qty:
            return Outcome.NOT_FOUND, "no_sale_ticket"
        if c.status != "confirmed":
            return Outcome.CONFLICT, "transfer_not_sold"
        states = [self.tickets.get(f"{claim_id}-{i}", "") for i in range(1, c.qty + 1)]
        if unit:
            if states[unit - 1].startswith("in:"):
                return Outcome.CONFLICT, "transfer_checked_in"
            if states[unit - 1]:
                return Outcome.CONFLICT, "ticket_not_valid"
        elif any(s.startswith("in:") for s in states):
            return Outcome.CONFLICT, "transfer_checked_in"
        elif not any(s == "" for s in states):
            return Outcome.CONFLICT, "transfer_not_sold"
        if recipient == giver:
            return Outcome.CONFLICT, "transfer_to_self"
        left = 1 if unit else self.own(claim_id)
        if self.user_total(recipient) + left > self.per_user:
            return Outcome.LIMIT_EXCEEDED, "per_user"
        if self.per_person is not None:  # the recipient's person, as for a claim
            if not person:
                return Outcome.LIMIT_EXCEEDED, "person_required"
            mine = left if c.person == person else 0
            if self.person_total(person) - mine + left > self.per_person:
                return Outcome.LIMIT_EXCEEDED, "per_person"
        return Outcome.OK, ""

    def transferred(self, claim_id: str, new_id: str, recipient: str,
                    person: str = "", unit: int = 0) -> None:
        c = self.claims[claim_id]
        if unit:  # one ticket moves; the claim keeps the others
            left = 1
            self.tickets[f"{claim_id}-{unit}"] = "moved"
        else:
            left = self.own(claim_id)
            c.status = "transferred"
        self.claims[new_id] = ModelClaim(recipient, c.sku, left, c.deadline, "confirmed",
                                         person=person if self.per_person is not None else "")
