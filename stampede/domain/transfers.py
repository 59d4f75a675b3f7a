"""Transfers of sold claims (after the sale): a single-use token, the claim re-issued.

The holder opens an offer and passes its token; the recipient accepts it and
gets the units (the tickets) under a new claim id, so every code the giver
could still show dies at once. One ticket of a claim can go alone: the
recipient gets a claim of that unit, the giver keeps the others. The
campaign's rule says whether the recipient's limits apply. The token is
kept only as its SHA-256.
"""

import hashlib
import re
from datetime import datetime
from typing import Annotated

from msgspec import Meta, Struct
from redis.asyncio import Redis

from stampede.domain import identity as person
from stampede.domain.models import from_ms
from stampede.domain.seen import campaign_seen
from stampede.outcomes import OUTCOMES, Outcome, parse_detail
from stampede.state import keys, records
from stampede.state.scripts import ScriptRegistry

_NOT_LIVE = {"missing": Outcome.CAMPAIGN_MISSING, "fenced": Outcome.FENCED}
_TOKEN = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})\.[0-9a-f]{32}$")


class TransferOffer(Struct, kw_only=True):
    claim_id: str
    ticket_id: str | None = None
    """A one-ticket transfer: the ticket that moves (the claim keeps the others)."""
    transfer_token: str
    """Single use: whoever accepts it first gets the claim (give it to one person)."""
    expires_at: datetime


class TransferAccept(Struct, forbid_unknown_fields=True, kw_only=True):
    transfer_token: Annotated[str, Meta(min_length=1, max_length=200)]


class TransferResult(Struct, frozen=True):
    outcome: Outcome
    offer: TransferOffer | None = None
    new_claim_id: str | None = None
    reason: str | None = None
    params: dict[str, int] = {}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Transfers:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry) -> None:
        self.redis = redis
        self.scripts = scripts

    async def offer(self, claim_id: str, user: str, token: str,
                    unit: int = 0) -> TransferResult:
        """Open a transfer of `user`'s sold claim under `token` (made by the caller), or
        of its ticket number `unit` alone."""
        cid = keys.campaign_of_claim(claim_id)
        if cid is None or not keys.valid_user_id(user):
            return TransferResult(Outcome.NOT_FOUND,
                                  reason="no_sale_ticket" if unit else "no_claim")
        code, detail, expires = await self.scripts.run(
            "transfer_offer", [*keys.campaign_keys(cid), keys.transfers_key(cid),
                               keys.tickets_key(cid)],
            [claim_id, user, token_hash(token), unit])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            reason = str(detail) or None
            if unit and reason == "no_claim":  # another user's ticket: as unknown
                reason = "no_sale_ticket"
            return TransferResult(outcome, reason=reason)
        return TransferResult(outcome, TransferOffer(claim_id=claim_id, transfer_token=token,
                                                     ticket_id=f"{claim_id}-{unit}"
                                                     if unit else None,
                                                     expires_at=from_ms(int(expires))))

    async def accept(self, token: str, user: str,
                     identity: str | None = None) -> TransferResult:
        """Take the claim (or ticket) of `token`; `identity` is the recipient's hashed
        real person (a per_person sale counts the units against it)."""
        m = _TOKEN.match(token)
        if m is None or not keys.valid_user_id(user):
            return TransferResult(Outcome.NOT_FOUND, reason="no_transfer")
        cid = m.group(1)
        hashed = token_hash(token)
        # The campaign in the same MULTI: a transfer missing from a lost campaign may
        # yet come back (api.healing), one missing from a live one is not there.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.campaign_keys(cid).meta, "state", "fenced")
            pipe.hget(keys.transfers_key(cid), hashed)
            (state, fenced), raw = await pipe.execute()
        campaign = campaign_seen(state, fenced)
        if campaign != "live":
            return TransferResult(_NOT_LIVE[campaign])
        if raw is None:
            return TransferResult(Outcome.NOT_FOUND, reason="no_transfer")
        giver = records.TRANSFER.decode(raw).giver
        code, detail, new_id = await self.scripts.run(
            "transfer_accept", [*keys.campaign_keys(cid), keys.transfers_key(cid),
                                keys.tickets_key(cid), keys.refunds_key(cid),
                                keys.ticket_holder_key(cid, giver),
                                keys.ticket_holder_key(cid, user)],
            [hashed, user, giver, person.check(identity) if identity is not None else ""])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            reason, params = parse_detail(str(detail))
            return TransferResult(outcome, reason=reason or None, params=params)
        return TransferResult(outcome, new_claim_id=str(new_id))
