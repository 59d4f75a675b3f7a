"""`ClaimGate`: what sale claims and coupon claims share before and after their script.

Before: the expiry of a claim's waiting-room admission token, and its guard
context (client signals, a proof-of-work solution checked here). Around: the
batch loop that sends again, with their context, the claims of a campaign
found guarded since the last reply. After: the refusal details of a guard
answer, and what the reply teaches this process (is the campaign guarded, do
its risk rules read each user's recent campaigns), recorded off the answer's
path. `Engine` and `Coupons` each hold the same gate; neither needs the other.
"""

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stampede.domain import throttle
from stampede.domain.admission import AdmissionTokens, kept_secret
from stampede.domain.shards import AGAIN, DRY, DRY_AGAIN
from stampede.domain.throttle import ChallengeView, ClientSignals, Guard, ThrottleSpec
from stampede.outcomes import Outcome
from stampede.settings import Settings
from stampede.state import keys

RECENT_TTL_MS = 86_400_000
"""How long a user's recent-campaign record lives (one member per campaign)."""


class HasUser(Protocol):
    @property
    def user(self) -> str: ...


class HasOutcome(Protocol):
    @property
    def outcome(self) -> Outcome: ...


C = TypeVar("C", bound=HasUser)
R = TypeVar("R")
RunOnce = Callable[[str, Sequence[C], bool], Awaitable[list[R]]]
RunRouted = Callable[[str, Sequence[C], bool, bool, bool], Awaitable[list[R]]]
"""A batch's script call: (campaign, claims, guarded, dry, passed)."""
"""One script call of a batch: (campaign, claims, send the guard context?) -> answers."""


@dataclass(frozen=True, slots=True)
class GuardRefusal:
    """The details of a guard refusal: THROTTLED's exact retry-after, the fresh
    challenge CHALLENGE_REQUIRED asks to solve; BLOCKED has neither."""
    reason: str
    retry_after_ms: int | None = None
    challenge: ChallengeView | None = None


class ClaimGate:
    def __init__(self, redis: "Redis", settings: Settings,
                 default_guard: ThrottleSpec | None) -> None:
        self.redis = redis
        self.settings = settings
        self._guarded: dict[str, bool] = {}
        """Was the campaign guarded at its last reply? (Unguarded: claims go without context.)"""
        self._recent_window: dict[str, int] = {}
        """Campaigns whose risk rules read recent_campaigns -> its window (ms), per reply."""
        self._default_reads_recent = default_guard is not None and any(
            r.signal == "recent_campaigns" for r in default_guard.risk)
        self._background: set[asyncio.Task[Any]] = set()

    @functools.cached_property
    def admission(self) -> AdmissionTokens:
        """Signs and checks waiting-room admission tokens (secret kept under data_dir)."""
        return AdmissionTokens(self.settings.admission_secret
                               or kept_secret(self.settings.data_dir / "admission.secret"))

    @functools.cached_property
    def challenges(self) -> throttle.Challenges:
        """Signs and checks proof-of-work challenges (keys from settings, else under data_dir)."""
        if self.settings.pow_secrets:
            return throttle.Challenges(throttle.parse_keys(self.settings.pow_secrets))
        return throttle.Challenges(
            {"k0": kept_secret(self.settings.data_dir / "pow.secret").encode()})

    # -- before the script ---------------------------------------------------

    def admission_exp(self, cid: str, user: str, token: str | None) -> int:
        """The expiry of a genuine admission token of this user and campaign, else -1."""
        if token is None:
            return -1
        exp = self.admission.verify(token, cid, user)
        return -1 if exp is None else exp

    def guard(self, cid: str, user: str, client: ClientSignals | None) -> Guard:
        """The claim's guard context; a solution counts only if genuine and for this claimant."""
        return self.challenges.guard(cid, user, client)

    async def recent_counts(self, cid: str, claims: Sequence[HasUser]) -> dict[str, int]:
        """Campaigns each user placed holds in lately, when the campaign's rules ask."""
        window = self._recent_window.get(cid)
        if not window:
            return {}
        users = sorted({c.user for c in claims})
        since = int(time.time() * 1000) - window
        async with self.redis.pipeline(transaction=False) as pipe:
            for u in users:
                pipe.zcount(keys.recent_claims_key(u), since, "+inf")
            counts = await pipe.execute()
        return dict(zip(users, map(int, counts), strict=True))

    # -- the batch -----------------------------------------------------------

    async def guarded_batch(self, cid: str, claims: Sequence[C], run_once: RunOnce[C, R],
                            needs_guard: R) -> list[R]:
        """One script call of a claim batch (sale or coupon); claims of a campaign guarded
        since the last reply (answered `needs_guard`) go once more, with their guard
        context (which a campaign believed unguarded is sent without)."""
        guarded = self._guarded.get(cid, True)
        results = await run_once(cid, claims, guarded)
        if guarded:
            return results
        again = [i for i, r in enumerate(results) if r is needs_guard]
        if again:
            redone = await run_once(cid, [claims[i] for i in again], True)
            for i, r in zip(again, redone, strict=True):
                results[i] = r
        return results

    async def routed_batch(self, key: str, claims: Sequence[C], run: RunRouted[C, R],
                           needs_guard: R) -> list[R]:
        """A batch by its batcher key: a shard's tries (shards.DRY, ...) go dry or
        past the guard; any other key is a plain guarded batch."""
        if key.endswith(DRY):
            return await self.guarded_batch(
                key.removesuffix(DRY), claims,
                lambda c, cs, g: run(c, cs, g, True, False), needs_guard)
        if key.endswith(DRY_AGAIN):
            return await run(key.removesuffix(DRY_AGAIN), claims, False, True, True)
        if key.endswith(AGAIN):
            return await run(key.removesuffix(AGAIN), claims, False, False, True)
        return await self.guarded_batch(
            key, claims, lambda c, cs, g: run(c, cs, g, False, False), needs_guard)

    # -- after the script ----------------------------------------------------

    def refusal(self, cid: str, user: str, outcome: Outcome, reason: str,
                value: str) -> GuardRefusal:
        """A guard refusal from a script's detail and value: the exact retry-after of
        THROTTLED, a freshly signed challenge of the difficulty CHALLENGE_REQUIRED asks."""
        if outcome is Outcome.THROTTLED:
            return GuardRefusal(reason, retry_after_ms=int(value))
        if outcome is Outcome.CHALLENGE_REQUIRED:
            return GuardRefusal(reason, challenge=self.challenges.issue(user, cid, int(value)))
        return GuardRefusal(reason)

    def note(self, cid: str, flag: int, claims: Sequence[HasUser],
             results: Sequence[HasOutcome]) -> None:
        """Learn from a claim script's last reply element whether the campaign is guarded
        and whether its risk rules read recent claims; record this batch's.

        Holds (and coupon claims) of guarded campaigns are recorded while any
        campaign this process serves (or the default) has a rule that reads them.
        """
        self._guarded[cid] = flag != 0
        if flag > 1:
            self._recent_window[cid] = flag
        else:
            self._recent_window.pop(cid, None)
        if not flag or not (self._recent_window or self._default_reads_recent):
            return
        held = sorted({c.user for c, r in zip(claims, results, strict=True)
                       if r.outcome is Outcome.OK})
        if held:  # off the answer's path: a risk signal, not an invariant
            task = asyncio.create_task(self._record_recent(cid, held))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _record_recent(self, cid: str, users: list[str]) -> None:
        now = int(time.time() * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for u in users:  # one member per campaign: no trimming needed
                    key = keys.recent_claims_key(u)
                    pipe.zadd(key, {cid: now})
                    pipe.pexpire(key, RECENT_TTL_MS)
                await pipe.execute()
        except RedisError:  # a lost risk signal must never fail a claim
            return

    async def wait_background(self) -> None:
        """Wait for the writes kept off the answer's path (recent claims, a risk signal)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
