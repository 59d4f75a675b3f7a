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


def next_return(meta: Mapping[str, str]) -> str | None:
    """The meta's `al_next` as the sweeper keeps it (include/allocations.lua): the earliest
    returns_at (ms) of an allocation still reserving, '0' none; None for a campaign
    without allocations. Rebuilt rather than left to a rescan, so that the sweep right
    after a recovery reads one field like any other."""
    if meta.get("al") != "1":
        return None
    earliest = 0
    for field, enc in meta.items():
        if not field.startswith("al:") or field.count(":") != 1:
            continue
        for part in filter(None, enc.split(";")):
            name, returns = part.split("/")[:2]
            due = int(returns or 0)
            if due > 0 and int(meta.get(f"{field}:{name}", "-1")) >= 0 and \
                    (earliest == 0 or due < earliest):
                earliest = due
    return str(earliest)
