"""A campaign's event stream rewritten as an older version wrote bundles: a claim_held
event per line (naming its bundle), then a bundle_held without `items`, `identity`,
`channel` or `code`. Done in Redis before the persister reads the stream, so the store
ends up holding the older shape exactly as it would have."""

from redis.asyncio import Redis

from stampede.durable.persister import ensure_group
from stampede.state import keys, records

_NEW_ONLY = ("items", "identity", "channel", "code")


def _old_shape(fields: dict[str, str]) -> list[dict[str, str]]:
    """One bundle_held's body as the events an older claim_bundle.lua emitted."""
    out = []
    items = records.decode_bundle_items(fields["items"])
    for i, (line, item) in enumerate(zip(fields["lines"].split(","), items, strict=True)):
        ev = {"claim": line, "user": fields["user"], "sku": item.sku, "qty": str(item.qty),
              "price": str(item.price), "deadline": fields["deadline"],
              "bundle": fields["claim"]}
        if fields.get("identity"):
            ev["identity"] = fields["identity"]
        if item.alloc:
            ev["alloc"] = item.alloc
        if fields.get("channel"):
            ev["channel"] = fields["channel"]
        if i == 0 and fields.get("code"):
            ev["code"] = fields["code"]
        out.append({"type": "claim_held", **ev})
    out.append({"type": "bundle_held", **{k: v for k, v in fields.items()
                                          if k not in _NEW_ONLY}})
    return out


async def rewrite_as_older(redis: "Redis[str]", cid: str) -> int:
    """Rewrite `cid`'s stream (none of it persisted yet) in the older shape, its seqs
    renumbered and meta evseq moved on to match; returns the bundles rewritten."""
    k = keys.campaign_keys(cid)
    entries = await redis.xrange(k.events)
    rewritten, seq, bodies = 0, 0, []
    for _, fields in entries:
        head = {"ts": fields["ts"], "epoch": fields.get("epoch", "0")}
        body = {f: v for f, v in fields.items() if f not in ("seq", "type", "ts", "epoch")}
        if fields["type"] == "bundle_held" and body.get("items"):
            rewritten += 1
            parts = _old_shape(body)
        else:
            parts = [{"type": fields["type"], **body}]
        for part in parts:
            seq += 1
            etype = part.pop("type")
            bodies.append({"seq": str(seq), "type": etype, **head, **part})
    pipe = redis.pipeline(transaction=True)
    pipe.delete(k.events)
    for body in bodies:
        pipe.xadd(k.events, body)  # type: ignore[arg-type]
    pipe.hset(k.meta, "evseq", seq)
    await pipe.execute()
    await ensure_group(redis, k.events)  # (the group went with the stream: from id 0)
    return rewritten
