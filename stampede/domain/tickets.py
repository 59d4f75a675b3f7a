"""Tickets and check-in (after the sale).

A ticketed sale (`tickets: {venue}`) makes each confirmed unit a ticket with
a static id, "<claim_id>-<n>" (n = 1..qty), and a rotating code shown to its
holder: "<ticket_id>.<K><TTTTTT>", where K is the active coupon key's id and
T the same 30-second TOTP the coupon till codes use (codes.py), over the
ticket id: a screenshot stops working within a minute. A code is verified
under the key its K names, so rotating the coupon keys (a new active key
first, the old one still listed) kills no live code. Nothing is stored
for a valid ticket; the tickets hash keeps those checked in or refunded.

Door scanners hold credentials per venue and gate, issued by ops like
merchant tokens (stored hashed). A scan's code is verified here, against
the scan's time; checkin.lua decides in order, atomically per campaign, so
two gates scanning one ticket at once see one admitted.
"""

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import Meta, Struct
from redis.asyncio import Redis

from stampede.domain.coupons.codes import STEP_MS, CodeKeys
from stampede.domain.grants import Grants
from stampede.domain.models import VenueId, from_ms
from stampede.domain.seen import CampaignSeen, campaign_seen
from stampede.errors import ValidationError
from stampede.settings import Settings
from stampede.state import keys, records
from stampede.state.scripts import ScriptRegistry

OFFLINE_MAX_AGE_MS = 7 * 86_400_000
"""The oldest scan an offline scanner may upload."""
CLOCK_SKEW_MS = 60_000
"""How far ahead of server time a scan's time may be."""

GateId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="gate id")]
Verdict = Literal["admitted", "checked_in", "refunded", "not_found", "wrong_venue",
                  "bad_code", "fenced"]


class ScannerSpec(Struct, forbid_unknown_fields=True, kw_only=True):
    venue: VenueId
    gate: GateId


class ScannerCredentials(Struct, kw_only=True):
    scanner_id: str
    venue: str
    gate: str
    token: str
    """The scanner's bearer token: shown once, stored hashed."""


class Scan(Struct, forbid_unknown_fields=True, kw_only=True):
    code: Annotated[str, Meta(min_length=1, max_length=200)]
    scanned_at: datetime | None = None
    """When an offline scanner scanned it (the code is checked against that time);
    none: now."""


class ScanBatch(Struct, forbid_unknown_fields=True, kw_only=True):
    scans: Annotated[list[Scan], Meta(min_length=1, max_length=1000)]


class CheckinVerdict(Struct, kw_only=True):
    verdict: Verdict
    """admitted: let in; checked_in: already, at `gate` at `at`; refunded; not_found;
    wrong_venue (another venue's ticket); bad_code (forged or stale); fenced (retry)."""
    ticket_id: str | None = None
    gate: str | None = None
    at: datetime | None = None


class CheckinResults(Struct, kw_only=True):
    results: list[CheckinVerdict]


class TicketView(Struct, kw_only=True):
    ticket_id: str
    campaign_id: str
    sku: str
    status: Literal["valid", "checked_in", "refunded", "transferred"]
    """transferred: given away alone (one-ticket transfer); its code no longer works"""
    code: str | None = None
    """The rotating code to show (valid tickets only): good until `code_expires_at`."""
    code_expires_at: datetime | None = None
    gate: str | None = None
    checked_in_at: datetime | None = None


class TicketList(Struct, kw_only=True):
    tickets: list[TicketView]


@dataclass(frozen=True)
class Scanner:
    scanner_id: str
    venue: str
    gate: str


@dataclass(frozen=True, slots=True)
class _Pending:
    """A scan whose code is genuine, on its way to checkin.lua."""
    ticket_id: str
    claim_id: str
    unit: int
    at: int
    scanner: Scanner


_SCANNER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def ticket_code(code_keys: CodeKeys, ticket_id: str, step: int, kid: str | None = None) -> str:
    rotating = code_keys.rotating(ticket_id, step, kid)  # kid + ticket id + TOTP
    return f"{ticket_id}.{rotating[0]}{rotating[-6:]}"


def verify_code(code_keys: CodeKeys, code: str, at_ms: int) -> str | None:
    """The ticket id of a genuine code for the step of `at_ms` or the one before,
    under the key its K names while that key is listed: a key rotation leaves the
    codes shown (or scanned offline) before it valid until the old key is removed."""
    ticket_id, sep, tail = code.rpartition(".")
    if not sep or not tail or keys.claim_of_ticket(ticket_id) is None:
        return None
    kid = tail[0]
    if not code_keys.listed(kid):  # unknown or retired key
        return None
    step = at_ms // STEP_MS
    ok = False
    for s in (step - 1, step):
        ok |= hmac.compare_digest(code, ticket_code(code_keys, ticket_id, s, kid))
    return ticket_id if ok else None


_LOST = "lost"
"""checkin.lua's verdict for a scan whose campaign has no state at all."""


async def _judge_lost(verdicts: list[CheckinVerdict],
                      known: Callable[[str], Awaitable[bool]] | None) -> list[CheckinVerdict]:
    judged: dict[str, bool] = {}
    for i, v in enumerate(verdicts):
        if cast(str, v.verdict) != _LOST:
            continue
        cid = (v.ticket_id or "").split(".", 1)[0]
        if cid not in judged:
            judged[cid] = known is not None and await known(cid)
        verdicts[i] = msgspec.structs.replace(
            v, verdict="fenced" if judged[cid] else "not_found")
    return verdicts


class Tickets:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry, settings: Settings,
                 code_keys: CodeKeys, grants: Grants) -> None:
        self.grants = grants
        self.redis = redis
        self._waiting: dict[str, list[tuple[_Pending, asyncio.Future[CheckinVerdict]]]] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.scripts = scripts
        self.settings = settings
        self.code_keys = code_keys

    # -- holders ---------------------------------------------------------------

    async def mine(self, cid: str, user: str) -> list[TicketView] | None:
        """The user's tickets in a campaign (None: no such ticketed campaign)."""
        return (await self.find_mine(cid, user))[0]

    async def find_mine(self, cid: str, user: str
                        ) -> tuple[list[TicketView] | None, CampaignSeen]:
        """The user's tickets, and what the reads saw of the campaign. Each read is
        one MULTI with the campaign's meta: a campaign lost (or fenced) at any of
        them answers that, never a list missing what the heal will bring back."""
        if not keys.valid_campaign_id(cid) or not keys.valid_user_id(user):
            return None, "live"
        ks = keys.campaign_keys(cid)
        seen, tk_on, claim_ids = await self._with_campaign(
            ks, ("hget", ks.meta, "tk_on"), ("smembers", keys.ticket_holder_key(cid, user)))
        if seen != "live" or tk_on != "1":
            return None, seen
        if not claim_ids:
            return [], seen
        ordered = sorted(cast(set[str], claim_ids))
        seen, raws = await self._with_campaign(ks, ("hmget", ks.claims, ordered))
        if seen != "live":
            return None, seen
        claims = [(claim_id, records.CLAIM.decode(raw))
                  for claim_id, raw in zip(ordered, raws, strict=True) if raw is not None]
        ids = [[f"{claim_id}-{n}" for n in range(1, c.qty + 1)] for claim_id, c in claims]
        seen, states = await self._with_campaign(
            ks, ("hmget", keys.tickets_key(cid), [t for unit in ids for t in unit] or [""]))
        if seen != "live":
            return None, seen
        step = int(time.time() * 1000) // STEP_MS
        by_ticket = dict(zip((t for unit in ids for t in unit), states, strict=False))
        return [self._view(cid, c.sku, ticket_id, by_ticket[ticket_id], step)
                for (_, c), unit in zip(claims, ids, strict=True) for ticket_id in unit], seen

    async def _with_campaign(self, ks: keys.CampaignKeys, *reads: tuple[Any, ...]
                             ) -> tuple[Any, ...]:
        """(what was seen of the campaign, each read's answer), in one MULTI."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(ks.meta, "state", "fenced")
            for command, *args in reads:
                getattr(pipe, command)(*args)
            (state, fenced), *answers = await pipe.execute()
        return (campaign_seen(state, fenced), *answers)

    def _view(self, cid: str, sku: str, ticket_id: str, state: str | None,
              step: int) -> TicketView:
        if state is None:
            return TicketView(ticket_id=ticket_id, campaign_id=cid, sku=sku, status="valid",
                              code=ticket_code(self.code_keys, ticket_id, step),
                              code_expires_at=from_ms((step + 2) * STEP_MS))
        t = records.TICKET.decode(state)
        if t.status == "refunded":
            return TicketView(ticket_id=ticket_id, campaign_id=cid, sku=sku, status="refunded")
        if t.status == "moved":
            return TicketView(ticket_id=ticket_id, campaign_id=cid, sku=sku,
                              status="transferred")
        return TicketView(ticket_id=ticket_id, campaign_id=cid, sku=sku, status="checked_in",
                          gate=t.gate, checked_in_at=from_ms(t.at))

    # -- scanners ----------------------------------------------------------------

    async def put_scanner(self, scanner_id: str, spec: ScannerSpec) -> ScannerCredentials:
        """Register a scanner (or give it a new token): a venue's gate; stored hashed."""
        if not _SCANNER.match(scanner_id):
            raise ValidationError("scanner id must match [a-z0-9][a-z0-9_-]{0,63}")
        token = f"{scanner_id}.{secrets.token_urlsafe(32)}"
        record = {"venue": spec.venue, "gate": spec.gate,
                  "token_sha256": hashlib.sha256(token.encode()).hexdigest()}
        await self.redis.hset(keys.SCANNERS, scanner_id, json.dumps(record))
        return ScannerCredentials(scanner_id=scanner_id, venue=spec.venue, gate=spec.gate,
                                  token=token)

    async def remove_scanner(self, scanner_id: str) -> bool:
        return bool(await self.redis.hdel(keys.SCANNERS, scanner_id))

    async def scanner(self, token: str) -> Scanner | None:
        """The scanner a bearer token belongs to, compared in constant time."""
        scanner_id, sep, _ = token.rpartition(".")
        if not sep or not _SCANNER.match(scanner_id):
            return None
        raw = await self.redis.hget(keys.SCANNERS, scanner_id)
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        given = hashlib.sha256(token.encode()).hexdigest()
        if not hmac.compare_digest(given, record["token_sha256"]):
            return None
        return Scanner(scanner_id, record["venue"], record["gate"])

    # -- check-in ----------------------------------------------------------------

    async def check_in(self, scanner: Scanner, scans: list[Scan],
                       known: Callable[[str], Awaitable[bool]] | None = None
                       ) -> list[CheckinVerdict]:
        """Verdicts for `scans`, in order. A scan whose campaign the script found
        without state is `fenced` (retry) if `known(campaign)` says it is being
        healed (lost from Redis, kept in the store), else `not_found`. A batch's
        scans of one campaign go to its script together, in their order, so a
        ticket scanned twice in a batch is admitted, then checked_in. A single scan
        joins the other single scans of its campaign in this loop tick (one script
        call for a gate rush's scans)."""
        now = int(time.time() * 1000)
        out: list[CheckinVerdict | None] = [None] * len(scans)
        groups: dict[str, list[tuple[int, _Pending]]] = {}
        for i, scan in enumerate(scans):
            at = 0
            if scan.scanned_at is not None:
                at = int(scan.scanned_at.timestamp() * 1000)
                if not now - OFFLINE_MAX_AGE_MS <= at <= now + CLOCK_SKEW_MS:
                    raise ValidationError(f"scans[{i}].scanned_at must be within the last "
                                          f"{OFFLINE_MAX_AGE_MS // 86_400_000} days and at "
                                          f"most {CLOCK_SKEW_MS // 1000} s ahead")
            ticket_id = verify_code(self.code_keys, scan.code, at or now)
            parts = keys.claim_of_ticket(ticket_id) if ticket_id else None
            if ticket_id is None or parts is None:
                out[i] = CheckinVerdict(verdict="bad_code")
                continue
            claim_id, unit = parts
            groups.setdefault(claim_id.split(".", 1)[0], []).append(
                (i, _Pending(ticket_id, claim_id, unit, at, scanner)))
        if len(scans) == 1 and groups:
            (cid, [(i, pending)]), = groups.items()
            out[i] = await self._coalesced(cid, pending)
        else:
            for cid, group in groups.items():
                verdicts = await self._run(cid, [p for _, p in group])
                for (i, _), verdict in zip(group, verdicts, strict=True):
                    out[i] = verdict
        return await _judge_lost([v for v in out if v is not None], known)

    def _coalesced(self, cid: str, pending: "_Pending") -> "asyncio.Future[CheckinVerdict]":
        """One script call in flight per campaign; the scans that come meanwhile wait
        and go together when it returns (as the claim batcher does for claims)."""
        fut: asyncio.Future[CheckinVerdict] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(cid, []).append((pending, fut))
        if cid not in self._busy:
            self._busy.add(cid)
            task = asyncio.create_task(self._pump(cid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fut

    async def _pump(self, cid: str) -> None:
        try:
            await asyncio.sleep(0)  # let this tick's scans join
            while self._waiting.get(cid):
                items = self._waiting.pop(cid)
                try:
                    verdicts = await self._run(cid, [p for p, _ in items])
                except Exception as exc:  # every waiter learns of the failure
                    for _, fut in items:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), verdict in zip(items, verdicts, strict=True):
                    if not fut.done():
                        fut.set_result(verdict)
        finally:
            self._busy.discard(cid)

    async def _run(self, cid: str, scans: list["_Pending"]) -> list[CheckinVerdict]:
        args: list[Any] = []
        for p in scans:
            args += [p.ticket_id, p.claim_id, p.unit, p.at, p.scanner.venue, p.scanner.gate,
                     p.scanner.scanner_id]
        reply = await self.scripts.run("checkin", [*keys.campaign_keys(cid),
                                                   keys.tickets_key(cid),
                                                   keys.checkin_counts_key(cid),
                                                   keys.outbox_key(cid)], args)
        verdicts = []
        for j, p in enumerate(scans):
            verdict, gate, at_ms = reply[3 * j:3 * j + 3]
            verdicts.append(CheckinVerdict(verdict=verdict, ticket_id=p.ticket_id,
                                           gate=gate or None,
                                           at=from_ms(int(at_ms)) if int(at_ms) else None))
        if int(reply[-1]):  # admissions that wrote an on_checkin grant to the outbox
            admitted = [p.ticket_id for p, v in zip(scans, verdicts, strict=True)
                        if v.verdict == "admitted"]
            await self.grants.drain_outbox(cid, admitted)
        return verdicts

    async def gate_counts(self, cid: str) -> dict[str, int]:
        raw = cast(dict[str, str], await self.redis.hgetall(keys.checkin_counts_key(cid)))
        return {gate: int(n) for gate, n in sorted(raw.items())}
