"""A chaos drill: faults under a steady load, then proof that nothing was lost.

A real `stampede serve` (its embedded Valkey, a SQLite or PostgreSQL store)
takes claims, confirms and cancels from `Buyers`, which send every request
with an Idempotency-Key, retry a 503 or a dropped connection with the same
key, and record every answer. Faults, one at a time:

    valkey_kill     kill -9 the embedded Valkey (serve restarts it from its AOF)
    persister_kill  kill -9 the persister child (serve restarts it)
    service_kill    kill -9 serve itself, then start it again on the same data
    store_stop      stop PostgreSQL for a while, then start it again
    campaign_flush  delete the campaign's state keys in Redis while claims run;
                    its event stream stays, so the heal stores what the persister
                    had not yet stored: no claim answered 201 may then be 404

After each: the load pauses, the store must catch up within `catch_up_bound_s`
and hold every claim a buyer saw confirmed; `stampede audit` must be clean
(nothing oversold, no double effect), there must be no dead letter, no
Idempotency-Key may have answered two claims, and the buyers must have seen
no 5xx but 503 and no 404. `FaultReport` has the figures: time to heal,
store catch-up time, requests refused (503) and unreachable.

One loss is expected, not a problem: under appendfsync everysec Valkey may
answer a write up to `AOF_LAG_S` before it writes it to its AOF (it postpones
the write while a slow background fsync runs), so a kill -9 of Valkey can
lose holds, confirms and cancels answered just before it; those the persister
had not stored yet are gone (README, "Loss windows"). A 404 for a claim
answered 201 in that window, or a confirm answered in it missing from the
store, is counted in `FaultReport.lost_to_aof`; anything answered outside it
(and everything after the restart) must still hold.

Used by tests/system/test_chaos.py (short) and `python -m bench.chaos` (long).
Everything it starts is its own child and is stopped by pid.
"""

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
from redis.asyncio import Redis
from sqlalchemy import func, select

from stampede.durable.lagcheck import compare
from stampede.durable.store import Store, open_store
from stampede.durable.store import schema as t
from stampede.runtime import postgres
from stampede.runtime.ports import free_port
from stampede.state import keys

FAULTS = ("valkey_kill", "persister_kill", "service_kill", "store_stop", "campaign_flush")
CAMPAIGN = "chaos"
RETRYABLE = {503}
RETRY_FOR_S = 90.0
AOF_LAG_S = 2.2
"""Valkey postpones an AOF write for at most 2 s (then a cron tick, 100 ms at hz 10)."""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


class Service:
    """`stampede serve` as a child process on fixed ports and one data directory."""

    def __init__(self, data_dir: Path, store_url: str | None,
                 appendfsync: str = "everysec") -> None:
        self.data_dir = data_dir
        self.port, self.admin_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
        self.env.update(STAMPEDE_DATA_DIR=str(data_dir), STAMPEDE_DEV_AUTH="1",
                        STAMPEDE_DRAIN_DELAY_MS="0", STAMPEDE_RESTART_BACKOFF_MS="100",
                        STAMPEDE_PERSIST_CLAIM_IDLE_MS="1000", STAMPEDE_PERSIST_STALL_S="10",
                        STAMPEDE_APPENDFSYNC=appendfsync)
        if store_url:
            self.env["STAMPEDE_STORE_URL"] = store_url
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.data_dir / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stampede.runtime.cli", "serve", "--port", str(self.port),
             "--admin-port", str(self.admin_port)], env=self.env, stdout=log,
            stderr=subprocess.STDOUT)
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def valkey_pid(self) -> int:
        try:
            return int((self.data_dir / "valkey" / "valkey.pid").read_text())
        except (OSError, ValueError):
            return 0

    def persister_pid(self) -> int:
        if self.proc is None:
            return 0
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            for child in task.read_text().split():
                try:
                    cmd = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"persist" in cmd and _alive(int(child)):
                    return int(child)
        return 0

    def redis_url(self) -> str:
        return (self.data_dir / "valkey" / "url").read_text().strip()

    def cli(self, *args: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run([sys.executable, "-m", "stampede.runtime.cli", *args],
                              env=self.env, capture_output=True, text=True, timeout=300,
                              check=False)


@dataclass
class Answers:
    """What the buyers saw, per phase (before, fault, after)."""
    phase: str = "before"
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    answered_at: dict[str, float] = field(default_factory=dict)
    """Claim id -> when its 201 came; "<id> confirm" -> when its confirm came (monotonic)."""
    not_found: list[tuple[str, str]] = field(default_factory=list)
    """(claim id, what) of a 404 for a claim a buyer was answered 201 for."""
    claimed: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key of a claim -> the claim id it answered."""
    duplicates: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    """Answers a buyer must never see: a 5xx but 503, a 404 for the campaign."""

    def saw(self, what: str) -> None:
        self.statuses.setdefault(self.phase, Counter())[what] += 1


class Buyers:
    """`n` buyers in a loop: claim, then confirm half and cancel a quarter of the holds."""

    def __init__(self, base_url: str, n: int, answers: Answers, seed: int = 7) -> None:
        self.base_url, self.n, self.answers = base_url, n, answers
        self.rng = random.Random(seed)
        self.running = asyncio.Event()
        self.running.set()
        self.busy = 0
        self.stop = asyncio.Event()

    async def pause(self) -> None:
        """Stop starting new work and wait for what is in flight."""
        self.running.clear()
        while self.busy:
            await asyncio.sleep(0.02)

    def resume(self) -> None:
        self.running.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._buyer(session, i) for i in range(self.n)))

    async def _buyer(self, session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            await self.running.wait()
            if self.stop.is_set():
                return
            self.busy += 1
            try:
                await self._one(session, f"b{n}-{i}")
            finally:
                self.busy -= 1
            i += 1

    async def _one(self, session: aiohttp.ClientSession, user: str) -> None:
        key = f"{user}-claim"
        status, body = await self._call(session, "POST", f"/v1/campaigns/{CAMPAIGN}/claims",
                                        user, key, {"sku": "tee"})
        if status != 201:
            return
        claim = str(body["claim_id"])
        self.answers.answered_at[claim] = time.monotonic()
        if self.answers.claimed.setdefault(key, claim) != claim:
            self.answers.duplicates.append(key)
        roll = self.rng.random()
        if roll < 0.5:
            status, body = await self._call(session, "POST", f"/v1/claims/{claim}/confirm",
                                            user, f"{user}-confirm")
            if status == 200 and body.get("status") == "confirmed":
                self.answers.confirmed.add(claim)
                self.answers.answered_at[f"{claim} confirm"] = time.monotonic()
        elif roll < 0.75:
            await self._call(session, "POST", f"/v1/claims/{claim}/cancel", user,
                             f"{user}-cancel")

    async def _call(self, session: aiohttp.ClientSession, method: str, path: str, user: str,
                    key: str, payload: dict[str, Any] | None = None
                    ) -> tuple[int, dict[str, Any]]:
        """Send until a final answer (not 503, not a dropped connection), same key each time."""
        deadline = time.monotonic() + RETRY_FOR_S
        headers = {"X-User-Id": user, "Idempotency-Key": key}
        while True:
            try:
                async with session.request(method, self.base_url + path, json=payload,
                                           headers=headers) as resp:
                    body = await resp.json(content_type=None)
                    if not isinstance(body, dict):
                        self.answers.bad.append(f"{method} {path} {resp.status}: {body!r}")
                        body = {}
                    code = body.get("error", {}).get("code", "") if resp.status >= 400 else ""
                    self.answers.saw(f"{resp.status} {code}".strip())
                    what = f"{self.answers.phase}: {method} {path} {resp.status} {code}"
                    claim = path.split("/")[3] if path.startswith("/v1/claims/") else ""
                    if resp.status == 404 and claim in self.answers.answered_at:
                        self.answers.not_found.append((claim, what))
                    elif resp.status == 404 or (resp.status >= 500 and resp.status != 503):
                        self.answers.bad.append(what)
                    if resp.status not in RETRYABLE and code != "conflict":
                        return resp.status, body
            except (aiohttp.ClientError, TimeoutError, ValueError):
                self.answers.saw("unreachable")
            if time.monotonic() > deadline or self.stop.is_set():
                return 0, {}
            await asyncio.sleep(0.05)


@dataclass
class FaultReport:
    fault: str
    heal_s: float
    """From the fault until the service answered claims again (the part healed)."""
    catch_up_s: float
    """From pausing the load until the store held every event Redis had."""
    refused: int
    """503 answers while the fault lasted (retried by the buyers)."""
    unreachable: int
    answers: int
    confirmed_total: int
    problems: list[str]
    lost_to_aof: int = 0
    """Holds and confirms answered within AOF_LAG_S before a Valkey kill and then gone."""

    @property
    def ok(self) -> bool:
        return not self.problems


class Drill:
    def __init__(self, root: Path, postgresql: bool = False, buyers: int = 16,
                 stock: int = 1_000_000, catch_up_bound_s: float = 30.0,
                 store_down_s: float = 3.0, appendfsync: str = "everysec") -> None:
        """`appendfsync="always"` closes Valkey's loss window: then no loss is tolerated."""
        self.root = root
        self.appendfsync = appendfsync
        self.use_pg = postgresql
        self.pg: postgres.PgCluster | None = None
        self.n_buyers, self.stock = buyers, stock
        self.catch_up_bound_s = catch_up_bound_s
        self.store_down_s = store_down_s
        self.answers = Answers()
        self.service: Service | None = None
        self.buyers: Buyers | None = None
        self._load: asyncio.Task[None] | None = None
        self.store: Store | None = None
        self.valkey_kills: list[float] = []
        self.lost_to_aof = 0

    async def __aenter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        store_url = None
        if self.use_pg:
            self.pg = await asyncio.to_thread(postgres.start_postgres,
                                              settings={"max_connections": "100"})
            store_url = self.pg.dsn
        self.service = Service(self.root / "data", store_url, self.appendfsync)
        self.service.data_dir.mkdir(parents=True, exist_ok=True)
        self.service.start()
        await self._until(self._ready, 60, "the service did not start")
        self.store = await open_store(store_url or
                                      f"sqlite:///{self.service.data_dir / 'stampede.db'}",
                                      migrate=False)
        await self._define()
        self.buyers = Buyers(self.service.url, self.n_buyers, self.answers)
        self._load = asyncio.create_task(self.buyers.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.buyers is not None:
            self.buyers.stop.set()
            self.buyers.resume()
        if self._load is not None:
            await asyncio.wait_for(self._load, RETRY_FOR_S + 20)
        if self.store is not None:
            await self.store.close()
        if self.service is not None:
            await asyncio.to_thread(self.service.stop)
        if self.pg is not None:
            await asyncio.to_thread(postgres.stop_postgres, self.pg)

    # -- the faults ---------------------------------------------------------------

    def faults(self) -> tuple[str, ...]:
        return FAULTS if self.use_pg else tuple(f for f in FAULTS if f != "store_stop")

    async def run_fault(self, fault: str, load_s: float = 2.0) -> FaultReport:
        assert self.service is not None and self.buyers is not None
        await asyncio.sleep(load_s)  # a steady load first
        self.answers.phase = fault
        started = time.monotonic()
        await getattr(self, f"_{fault}")(self.service)
        heal_s = time.monotonic() - started
        self.answers.phase = f"{fault}:after"
        await asyncio.sleep(load_s)  # the load goes on over the healed service
        await self.buyers.pause()
        catch_up_s = await self._catch_up()
        self.lost_to_aof = 0
        problems = await self._verify(catch_up_s)
        self.buyers.resume()
        seen = self.answers.statuses.get(fault, Counter())
        after = self.answers.statuses.get(f"{fault}:after", Counter())
        report = FaultReport(fault, round(heal_s, 2), round(catch_up_s, 2), seen["503 unavailable"],
                             seen["unreachable"], sum(seen.values()) + sum(after.values()),
                             len(self.answers.confirmed), problems, self.lost_to_aof)
        self.answers.phase = "between"
        return report

    async def _valkey_kill(self, svc: Service) -> None:
        old = svc.valkey_pid()
        self.valkey_kills.append(time.monotonic())
        os.kill(old, signal.SIGKILL)
        await self._until(lambda: svc.valkey_pid() not in (0, old), 30, "Valkey not restarted")
        await self._until(self._ready, 60, "not ready after the Valkey restart")

    async def _persister_kill(self, svc: Service) -> None:
        old = svc.persister_pid()
        os.kill(old, signal.SIGKILL)
        await self._until(lambda: svc.persister_pid() not in (0, old), 30,
                          "persister not restarted")

    async def _service_kill(self, svc: Service) -> None:
        assert svc.proc is not None
        svc.proc.kill()
        await asyncio.to_thread(svc.proc.wait, 10)
        await asyncio.sleep(0.5)  # clients find nobody home for a moment
        svc.start()
        await self._until(self._ready, 60, "the service did not come back")

    async def _store_stop(self, svc: Service) -> None:
        assert self.pg is not None
        await asyncio.to_thread(postgres.pause_postgres, self.pg)
        await asyncio.sleep(self.store_down_s)
        await asyncio.to_thread(postgres.resume_postgres, self.pg)

    async def _campaign_flush(self, svc: Service) -> None:
        redis = Redis.from_url(svc.redis_url(), decode_responses=True)
        meta = keys.campaign_keys(CAMPAIGN).meta
        try:
            await redis.delete(*[k for k in keys.campaign_keys(CAMPAIGN)
                                 if k != keys.events_key(CAMPAIGN)])

            async def healed() -> bool:
                state, fenced = await redis.hmget(meta, "state", "fenced")
                return state is not None and fenced == "0"

            await self._until(healed, 30, "the campaign was not healed")
        finally:
            await redis.aclose()

    # -- the checks ------------------------------------------------------------------

    async def _catch_up(self) -> float:
        assert self.service is not None and self.store is not None
        started = time.monotonic()
        redis = Redis.from_url(self.service.redis_url(), decode_responses=True)
        try:
            while time.monotonic() - started < self.catch_up_bound_s:
                try:
                    state = (await compare(redis, self.store, 3600))["campaigns"].get(CAMPAIGN)
                    if state and state.get("unpersisted") == 0 and \
                            state.get("behind_events") == 0:
                        break
                except Exception:  # noqa: BLE001, S110 - the store or Redis still coming back
                    pass
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()
        return time.monotonic() - started

    async def _verify(self, catch_up_s: float) -> list[str]:
        assert self.service is not None and self.store is not None
        problems = list(self.answers.bad)
        self.answers.bad.clear()
        for claim, what in self.answers.not_found:
            if self._in_aof_lag(f"{claim}"):
                self.lost_to_aof += 1
            else:
                problems.append(what)
        self.answers.not_found.clear()
        if catch_up_s >= self.catch_up_bound_s:
            problems.append(f"store still behind after {self.catch_up_bound_s}s")
        async with self.store.engine.connect() as conn:
            stored = {r[0] for r in await conn.execute(select(t.claims.c.claim_id).where(
                t.claims.c.campaign_id == CAMPAIGN, t.claims.c.status == "confirmed"))}
            dead = (await conn.execute(select(func.count()).select_from(
                t.dead_letters))).scalar_one()
            twice = (await conn.execute(
                select(t.claim_history.c.claim_id).where(t.claim_history.c.status == "held")
                .group_by(t.claim_history.c.claim_id).having(func.count() > 1))).all()
        lost = self.answers.confirmed - stored
        gone = {c for c in lost if self._in_aof_lag(f"{c} confirm")}
        self.lost_to_aof += len(gone)
        self.answers.confirmed -= gone
        lost -= gone
        if lost:
            problems.append(f"{len(lost)} confirmed claims missing from the store")
        if dead:
            problems.append(f"{dead} dead letters")
        if twice:
            problems.append(f"{len(twice)} claims held twice in the store")
        if self.answers.duplicates:
            problems.append(f"{len(self.answers.duplicates)} keys answered two claims")
        audit = await asyncio.to_thread(self.service.cli, "audit")
        if audit.returncode != 0:
            problems.append(f"audit exited {audit.returncode}: {audit.stdout[-500:]}")
        else:
            summary = json.loads(audit.stdout)["campaigns"][CAMPAIGN]
            for sku, s in summary["skus"].items():
                if s["available"] < 0 or s["sold"] + s["held"] > s["released"]:
                    problems.append(f"{sku} oversold: {s}")
        return problems

    def _in_aof_lag(self, answer: str) -> bool:
        """Was this answer given within AOF_LAG_S before a kill of Valkey (and may the AOF
        lose it: never under appendfsync always)?"""
        if self.appendfsync == "always":
            return False
        at = self.answers.answered_at.get(answer)
        return at is not None and any(k - AOF_LAG_S <= at <= k for k in self.valkey_kills)

    # -- helpers ---------------------------------------------------------------------------

    async def _define(self) -> None:
        assert self.service is not None
        spec = {"name": CAMPAIGN, "opens_at": "2020-01-01T00:00:00Z",
                "closes_at": "2099-01-01T00:00:00Z", "limits": {"per_user": 2},
                "skus": [{"sku": "tee", "price": 100,
                          "waves": [{"at": "2020-01-01T00:00:00Z", "qty": self.stock}]}]}
        token = (self.service.data_dir / "admin.token").read_text().strip()
        async with aiohttp.ClientSession() as session, session.put(
                f"http://127.0.0.1:{self.service.admin_port}/admin/v1/campaigns/{CAMPAIGN}",
                json=spec, headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status not in (200, 201):
                raise RuntimeError(f"cannot define the campaign: {await resp.text()}")

    async def _ready(self) -> bool:
        assert self.service is not None
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    self.service.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _until(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = check()
            if asyncio.iscoroutine(done):
                done = await done
            if done:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(what)

