"""Shared steps of the after-sale tests."""

from collections import Counter

from stampede import Engine
from stampede.domain.models import CampaignSpec
from stampede.domain.refunds import RefundRequest, RefundResult
from stampede.state import keys, records
from tests.conftest import campaign_spec


def sale_spec(stock: int = 10, per_user: int | None = 4, units_to: str = "restock",
              buyer_window_s: int | None = None, **extra: object) -> CampaignSpec:
    refunds: dict[str, object] = {"units_to": units_to}
    if buyer_window_s is not None:
        refunds["buyer_window_s"] = buyer_window_s
    return campaign_spec(stock=stock, per_user=per_user, refunds=refunds, **extra)


async def bought(engine: Engine, cid: str, user: str, qty: int = 1) -> str:
    """A confirmed claim of `qty` units of 'tee' for `user`: its id."""
    held = await engine.claim(cid, user, "tee", qty)
    assert held.claim is not None, held
    confirmed = await engine.confirm(held.claim.claim_id, user)
    assert confirmed.claim is not None and confirmed.claim.status == "confirmed"
    return held.claim.claim_id


async def refund(engine: Engine, claim_id: str, qty: int | None = None,
                 buyer: str | None = None, key: str | None = None) -> RefundResult:
    return await engine.refunds.refund(claim_id, RefundRequest(qty=qty, reason="test"),
                                       actor="ops-ann", buyer=buyer, op_key=key)


async def check_refund_invariants(engine: Engine, cid: str) -> None:
    """Stock adds up, and Redis counters agree with claims and their refunds."""
    stats = await engine.stats(cid)
    assert stats is not None
    ks = keys.campaign_keys(cid)
    claims = {k: records.CLAIM.decode(v)
              for k, v in (await engine.redis.hgetall(ks.claims)).items()}
    done = {k: records.REFUND.decode(v) for k, v in
            (await engine.redis.hgetall(keys.refunds_key(cid))).items()}
    tickets = {k: records.TICKET.decode(v).status for k, v in
               (await engine.redis.hgetall(keys.tickets_key(cid))).items()}
    held, sold, owned = Counter[str](), Counter[str](), Counter[str]()
    for cid_, c in claims.items():
        moved = sum(tickets.get(f"{cid_}-{n}") == "moved" for n in range(1, c.qty + 1))
        refunded = (done[cid_].units if cid_ in done else 0) + moved  # not the claim's
        assert 0 <= refunded <= c.qty
        assert (c.status == "refunded") == (refunded == c.qty and c.qty > 0 and cid_ in done)
        assert moved == 0 or c.status in ("confirmed", "refunded", "transferred")
        if c.status == "held":
            held[c.sku] += c.qty
        elif c.status == "confirmed":
            sold[c.sku] += c.qty - refunded
        if c.status in ("held", "confirmed"):
            owned[c.user] += c.qty - refunded
    for s in stats.skus:
        assert s.available >= 0
        assert s.available + s.held + s.sold == s.released
        assert (s.held, s.sold) == (held[s.sku], sold[s.sku])
    users = await engine.redis.hgetall(ks.users)
    totals = {u: sum(records.decode_units(n).values()) for u, n in users.items() if "|" not in u}
    assert totals == {u: n for u, n in owned.items() if n}
