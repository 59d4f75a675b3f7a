"""The persister's health as the gateway sees it: from Redis, whoever persists.

Stalled means an event has waited for the store longer than
STAMPEDE_PERSIST_STALL_S: the persister is down, crash-looping, or cannot
reach the store. It shows in /readyz's `details`, in the
`stampede_persister_stalled` gauge and in `stampede check`, but it does not
fail readiness: claims are safe in Redis and the store catches up later.
"""

from collections.abc import Callable
from typing import cast

from redis.asyncio import Redis

from stampede.durable.persister import lag
from stampede.logs import log
from stampede.metrics import PERSISTER_STALLED
from stampede.state import keys

Children = Callable[[], dict[str, dict[str, object]]]
"""The supervised children's state and restarts by name (Supervisor.status)."""


class PersisterHealth:
    def __init__(self, redis: "Redis", stall_s: float,
                 children: Children | None = None) -> None:
        self.redis = redis
        self.stall_s = stall_s
        self.children = children
        self.details: dict[str, object] = {"persister": {"state": "unknown"}}
        self._was = "unknown"

    async def refresh(self) -> None:
        """One look at every campaign's stream (a housekeeping tick)."""
        oldest, pending = 0.0, 0
        try:
            cids = sorted(cast(set[str], await self.redis.smembers(keys.CAMPAIGN_INDEX)))
            for cid in cids:
                info = await lag(self.redis, cid)
                oldest, pending = max(oldest, info.oldest_age_s), pending + info.pending
        except Exception as exc:  # noqa: BLE001 - Redis away: nothing can be said about the lag now
            self._set({"state": "unknown", "error": type(exc).__name__})
            return
        state = "stalled" if oldest > self.stall_s else "ok"
        child = self.children().get("persister") if self.children else None
        if child is not None and child["state"] != "running":
            state = str(child["state"])  # restarting or crash_loop: say why it is behind
        self._set({"state": state, "lag_s": round(oldest, 3), "pending": pending,
                   "stall_after_s": self.stall_s})

    def _set(self, persister: dict[str, object]) -> None:
        state = str(persister["state"])
        if self.children is not None:
            persister["children"] = self.children()
        self.details["persister"] = persister
        PERSISTER_STALLED.set(0 if state in ("ok", "unknown") else 1)
        if state != self._was:
            (log.info if state == "ok" else log.warning)("persister health", **persister)
            self._was = state
