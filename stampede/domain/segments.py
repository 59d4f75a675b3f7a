"""Audience segments: sets of user ids ops upload to a sale, admitted by the phases
that name them (include/phases.lua), added to and removed from live.

A request's ids are all checked before the first is written; they then go to
the script a thousand at a time, each call one event listing the ids it
changed, so a list of millions neither blocks Redis nor makes one huge event.
"""

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from stampede.domain.models import SegmentChange
from stampede.errors import ValidationError
from stampede.outcomes import Outcome
from stampede.state import keys
from stampede.state.scripts import ScriptRegistry

IDS_PER_CALL = 1000
MAX_IDS_PER_REQUEST = 2_000_000


def check_user_ids(ids: Sequence[str]) -> None:
    """ValidationError naming the first id (1-based line) that is not a user id."""
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise ValidationError(f"a segment upload takes at most {MAX_IDS_PER_REQUEST} user ids; "
                              f"this one has {len(ids)}")
    for i, user in enumerate(ids, 1):
        if not keys.valid_user_id(user):
            raise ValidationError(f"line {i}: {user[:140]!r} is not a user id "
                                  "([A-Za-z0-9_.:@-]{1,128})")


class Segments:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry) -> None:
        self.redis = redis
        self.scripts = scripts

    async def edit(self, cid: str, segment: str, add: bool, ids: Sequence[str],
                   actor: str) -> tuple[Outcome, str, SegmentChange | None]:
        """Add (or remove) checked user ids: (outcome, refusal reason, the change)."""
        check_user_ids(ids)
        ks = [*keys.campaign_keys(cid), *keys.presale_keys(cid)]
        changed, size = 0, 0
        for start in range(0, max(len(ids), 1), IDS_PER_CALL):  # no ids: one call, the size
            code, reason, n, size = await self.scripts.run(
                "segment_edit", ks,
                [actor, segment, "add" if add else "remove", *ids[start:start + IDS_PER_CALL]])
            if code != Outcome.OK:
                return Outcome(int(code)), str(reason), None
            changed += int(n)
        return Outcome.OK, "", SegmentChange(segment=segment, changed=changed, size=int(size))

    async def sizes(self, cid: str) -> dict[str, int]:
        raw = cast(dict[str, str], await self.redis.hgetall(keys.presale_keys(cid).pbatches))
        return {name[1:]: int(n) for name, n in sorted(raw.items())
                if name.startswith("#") and int(n) > 0}
