"""A campaign missing from Redis but known to the store answers 503, not 404.

The same holds while a campaign is fenced for its rebuild (recovery writes
its meta first, then its claims): a claim not yet back is not "not found".

Redis lost the campaign's keys (emptied, restarted from older data, keys
flushed): the service heals it from the store within a second or so
(runtime.persistence's heal job), and until then its routes say "retry"
(503 `unavailable`, Retry-After) rather than "no such campaign" (404), which
a client would take as final. "Known" is the store having it, or Redis still
holding its event stream (keys deleted but the stream kept, its events not yet
persisted: the heal follows the persister). Only answers that are already 404
pay for the look: one or two EXISTS, and a store query cached for a second.

Where the 404 was decided matters: a look at the campaign *after* a handler's
script is a second read, and the heal may finish between the two (the script
missed the flushed claim, the look sees the campaign rebuilt and open) - a
claim answered 201 would then get a final 404. So the claim routes note what
their script saw of the campaign in the same atomic step (`seen`): "live"
makes the 404 final with no further look, "missing" asks only the store, and
a fenced campaign is already answered 503 by the script. The waitlist,
waiting-room, status and after-sale routes do the same: their scripts check the
campaign before anything else (include/common.lua campaign_present, answering
CAMPAIGN_MISSING or FENCED) and the route notes it with `seen_by`. A route
whose path names no campaign (a transfer's token, a ticket listing's query)
notes the campaign too. Routes that note nothing get the look described above.
"""

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from stampede.api.context import ENGINE
from stampede.api.errors import Handler, refuse
from stampede.domain.seen import CampaignSeen, seen_by_outcome
from stampede.outcomes import Outcome
from stampede.state import keys

R = TypeVar("R", bound=web.StreamResponse)
InStore = Callable[[str], Awaitable[bool]]
IN_STORE = web.AppKey("campaign_in_store", object)
"""An async (campaign id) -> bool: does the durable store know it? Set by runtime."""
CACHE_S = 1.0
_SEEN = web.ResponseKey("campaign_seen", str)
"""The response's note of what its script saw of the campaign (a CampaignSeen)."""
_CAMPAIGN = web.ResponseKey("campaign_noted", str)
"""The campaign a route noted, where its path names none."""

_seen: dict[tuple[int, str], tuple[float, bool]] = {}
"""(the app's lookup, campaign) -> (when, known)"""


def campaign_of(request: web.Request) -> str | None:
    cid = request.match_info.get("cid")
    if cid is not None:
        return cid if keys.valid_campaign_id(cid) else None
    return keys.campaign_of_claim(request.match_info.get("claim_id", ""))


async def missing_but_known(request: web.Request, cid: str) -> bool:
    """The campaign is being rebuilt (fenced: its claims may not be back yet), or Redis
    has lost it while the store has it: it is about to be."""
    engine = request.app[ENGINE]
    state, fenced = await engine.redis.hmget(keys.campaign_keys(cid).meta, "state", "fenced")
    if state is not None:
        return bool(fenced == "1")
    return await known_to_store(request, cid)


def seen(response: R, campaign: CampaignSeen, cid: str | None = None) -> R:
    """Note on a 404 what its script saw of the campaign, atomically with its answer
    (and which campaign, where the path does not name it)."""
    response[_SEEN] = campaign
    if cid is not None and keys.valid_campaign_id(cid):
        response[_CAMPAIGN] = cid
    return response


def seen_by(response: R, outcome: Outcome, cid: str | None = None) -> R:
    """Note what a script that checks the campaign first saw, by its outcome."""
    return seen(response, seen_by_outcome(outcome), cid)


async def known_to_store(request: web.Request, cid: str) -> bool:
    """Will the heal bring this missing campaign back? Its event stream survived in
    Redis (its events are on their way to the store, the heal follows them), or the
    store has it."""
    if await request.app[ENGINE].redis.exists(keys.events_key(cid)):
        return True
    in_store = request.app.get(IN_STORE)
    if in_store is None:
        return False
    now = time.monotonic()
    slot = (id(in_store), cid)
    cached = _seen.get(slot)
    if cached is None or now - cached[0] > CACHE_S:
        if len(_seen) > 10_000:  # (unknown ids are cached too: keep it bounded)
            _seen.clear()
        cached = (now, await in_store(cid))  # type: ignore[operator]
        _seen[slot] = cached
    return cached[1]


def unavailable(cid: str) -> web.Response:
    return refuse("fenced", {"campaign": cid})


@web.middleware
async def healing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.status != 404:
        return response
    cid = response.get(_CAMPAIGN) or campaign_of(request)
    if cid is None:
        return response
    campaign = response.get(_SEEN)
    if campaign == "live":  # the script saw the campaign there and open: final
        return response
    if campaign == "missing":
        known = await known_to_store(request, cid)
    else:
        known = await missing_but_known(request, cid)
    return unavailable(cid) if known else response
