"""Presale allocations rebuilt from the store: each allocation's reserved units are its
qty (as defined, or as a PATCH last set it) less what claims took from it, but for
holds released (expired, cancelled: a refund or a transfer gives nothing back to an
allocation) (their `claim_held` events say, `alloc`), or -1 once an
`allocation_returned` event returned it. (Each claim's take comes back in its record,
`alloc`, so that a later release gives its units back.)"""

from collections.abc import Iterable, Mapping
from typing import Any

from stampede.domain.models import CampaignSpec


def parse_take(alloc: str) -> list[tuple[str, int]]:
    """ "name:n,name:n" -> [(name, n), ...]"""
    out = []
    for part in filter(None, alloc.split(",")):
        name, _, n = part.partition(":")
        out.append((name, int(n)))
    return out


def rebuild(spec: CampaignSpec, returned: set[tuple[str, str]], takes: dict[str, str],
            claims: Iterable[Any], config: Mapping[str, str] | None = None) -> dict[str, str]:
    """The meta fields as allocations.lua keeps them; `claims` are store rows
    (claim_id, sku, status). `config`, the meta as defined then patched: a SKU's
    allocations patched live ("alq:<sku>") count from their qty as patched."""
    reserved = {(s.sku, a.name): a.qty for s in spec.skus for a in s.allocations}
    for field, qtys in (config or {}).items():
        if field.startswith("alq:"):
            reserved.update({(field[4:], name): n for name, n in parse_take(qtys)})
    for c in claims:
        take = takes.get(c.claim_id)
        if take is None or c.status in ("expired", "cancelled"):  # released holds only
            continue
        for name, n in parse_take(take):
            if (c.sku, name) in reserved:
                reserved[(c.sku, name)] -= n
    meta = {f"al:{sku}:{name}": str(-1 if (sku, name) in returned else n)
            for (sku, name), n in reserved.items()}
    return meta
