"""What one atomic read saw of a campaign, so a "not found" is judged against it.

A campaign's keys can vanish (Redis emptied or flushed) and come back a moment
later when the service heals it from the store. An answer of "no such thing"
is final only if the read that found nothing also saw the campaign there and
open to reads; a second look afterwards may see it already healed
(stampede/api/healing.py turns "missing" into a 503 while the store knows it).
"""

from typing import Literal

from stampede.outcomes import Outcome

CampaignSeen = Literal["live", "missing", "fenced"]
"""A campaign as one atomic read saw it: there and open to reads, its keys missing
(lost: the store may know it), or fenced (being rebuilt)."""


def campaign_seen(state: str | None, fenced: str | None) -> CampaignSeen:
    """From the meta's `state` and `fenced` fields, read in the same MULTI as the rest."""
    if state is None:
        return "missing"
    return "fenced" if fenced == "1" else "live"


def seen_by_outcome(outcome: Outcome) -> CampaignSeen:
    """What a script that checks the campaign first (include/common.lua
    campaign_present) saw, by its answer: CAMPAIGN_MISSING, FENCED, or anything
    else (decided against a campaign that was there)."""
    if outcome is Outcome.CAMPAIGN_MISSING:
        return "missing"
    return "fenced" if outcome is Outcome.FENCED else "live"
