"""Signed webhooks from the store, to a real receiver on loopback that verifies them
with the `standardwebhooks` package: order, retries, a killed worker, SSRF refusals."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import event, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from stampede import Engine, Settings
from stampede.api.app import make_admin_app
from stampede.api.auth import Authenticator, parse_admin_tokens
from stampede.api.context import WEBHOOKS
from stampede.durable.delivery import FLUSH_EVERY, AddressGuard, Deliverer, DeliverySettings
from stampede.durable.persister import Persister
from stampede.durable.store import Store, open_store
from stampede.durable.store import schema as t
from stampede.durable.webhooks import WebhookCreate, Webhooks
from tests.conftest import campaign_spec

LOOPBACK = "127.0.0.0/8"
OPERATOR = {"Authorization": "Bearer op-token"}
FAST = DeliverySettings(poll_s=0.05, connect_timeout_s=1, timeout_s=2, backoff_base_s=0.05,
                        backoff_max_s=0.3)


@dataclass
class Receiver:
    """A webhook receiver: verifies every request, records what it accepted."""
    secrets: list[str] = field(default_factory=list)
    got: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)
    failing: bool = False
    refused_signature: int = 0
    requests: int = 0
    delay_s: float = 0.0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            return web.Response(status=500, text="down for maintenance")
        if not any(_verifies(s, body, request) for s in self.secrets):
            self.refused_signature += 1
            return web.Response(status=401)
        msg_id = request.headers["webhook-id"]
        assert self.bodies.setdefault(msg_id, body) == body, "a retry changed the body"
        self.got.append((msg_id, orjson.loads(body)))
        return web.Response(status=204)

    def ids(self) -> list[str]:
        return [m for m, _ in self.got]


def _verifies(secret: str, body: bytes, request: web.Request) -> bool:
    try:
        Webhook(secret).verify(body, dict(request.headers))
        return True
    except WebhookVerificationError:
        return False


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    r.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield r
    await runner.cleanup()


@pytest.fixture
def wh_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'store.db'}",
                    persist_batch=200, webhook_allowed_networks=LOOPBACK)


@dataclass
class Rig:
    engine: Engine
    store: Store
    admin: TestClient

    async def create(self, url: str, events: list[str] | None = None,
                     campaign: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url, "events": events or ["*"]}
        if campaign:
            body["campaign"] = campaign
        resp = await self.admin.post("/admin/v1/webhooks", json=body, headers=OPERATOR)
        assert resp.status == 201, await resp.text()
        created: dict[str, Any] = await resp.json()
        return created

    async def stored(self) -> list[str]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(t.events.c.campaign_id, t.events.c.seq)
                                       .order_by(t.events.c.campaign_id, t.events.c.seq))).all()
        return [f"{r.campaign_id}.{r.seq}" for r in rows]


@pytest.fixture
async def rig(clean_redis: str, wh_settings: Settings) -> AsyncIterator[Rig]:
    engine = Engine.from_url(clean_redis, wh_settings)
    await engine.start()
    store = await open_store(wh_settings.resolved_store_url)
    redis: Redis[str] = Redis.from_url(clean_redis, decode_responses=True)
    stop = asyncio.Event()
    persister = asyncio.create_task(Persister(redis, store, wh_settings, consumer="t").run(stop))
    auth = Authenticator("x" * 32, True, tuple(parse_admin_tokens("operator:op-token")))
    app = make_admin_app(engine, auth, {"draining": False})
    app[WEBHOOKS] = Webhooks(store)
    admin = TestClient(TestServer(app))
    await admin.start_server()
    try:
        yield Rig(engine, store, admin)
    finally:
        stop.set()
        await persister
        await admin.close()
        await redis.aclose()
        await store.close()
        await engine.close()


async def _rush(engine: Engine, campaigns: tuple[str, ...], claims: int) -> None:
    for cid in campaigns:
        await engine.define_campaign(cid, campaign_spec(stock=1000, per_user=None))
    await asyncio.gather(*(engine.claim(cid, f"u{n}", "tee", 1)
                           for n in range(claims) for cid in campaigns))


async def _until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.05)


def _in_order(ids: list[str]) -> None:
    """First deliveries of each campaign come in seq order with no hole."""
    last: dict[str, int] = {}
    for msg_id in ids:
        cid, seq = msg_id.rsplit(".", 1)
        if int(seq) <= last.get(cid, 0):
            continue  # a duplicate of an earlier delivery
        assert int(seq) == last.get(cid, 0) + 1, (msg_id, last.get(cid))
        last[cid] = int(seq)


@pytest.fixture
async def worker(rig: Rig) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        Deliverer(rig.store, AddressGuard.from_spec(LOOPBACK), FAST).run(stop))
    yield
    stop.set()
    await task


async def test_events_arrive_signed_and_in_order_per_campaign(
        rig: Rig, receiver: Receiver, worker: None) -> None:
    created = await rig.create(receiver.url)
    assert created["secret"].startswith("whsec_") and created["status"] == "active"
    receiver.secrets.append(created["secret"])
    await _rush(rig.engine, ("alpha", "beta"), 40)
    await _until(lambda: len(receiver.got) >= 84, 20, "every event delivered")
    stored = await rig.stored()
    assert sorted(set(receiver.ids())) == sorted(stored)
    _in_order(receiver.ids())
    first = dict(receiver.got)["alpha.1"]
    assert first["type"] == "campaign_defined" and first["data"]["campaign"] == "alpha"
    held = next(body for _, body in receiver.got if body["type"] == "claim_held")
    assert held["data"]["qty"] == 1 and held["data"]["sku"] == "tee"
    assert receiver.refused_signature == 0
    listed = await (await rig.admin.get("/admin/v1/webhooks", headers=OPERATOR)).json()
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]


async def test_a_receiver_down_for_a_while_gets_everything_after_it_recovers(
        rig: Rig, receiver: Receiver, worker: None) -> None:
    created = await rig.create(receiver.url, events=["claim_held"], campaign="alpha")
    receiver.secrets.append(created["secret"])
    receiver.failing = True
    await _rush(rig.engine, ("alpha", "beta"), 20)
    url = f"/admin/v1/webhooks/{created['id']}"
    await _until(lambda: receiver.requests >= 6, 10, "retries while failing")
    seen = await (await rig.admin.get(url, headers=OPERATOR)).json()
    assert seen["status"] == "failing" and "500" in seen["last_error"]
    assert seen["next_attempt_at"] is not None
    receiver.failing = False
    await _until(lambda: len(set(receiver.ids())) >= 20, 15, "delivered after recovery")
    ids = receiver.ids()
    _in_order_of_subscribed(ids)
    assert {m.split(".")[0] for m in ids} == {"alpha"}
    assert all(body["type"] == "claim_held" for _, body in receiver.got)
    deadline = time.monotonic() + 5
    while (seen := await (await rig.admin.get(url, headers=OPERATOR)).json())["failures"]:
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.05)
    assert seen["status"] == "active" and seen["last_error"] is None


def _in_order_of_subscribed(ids: list[str]) -> None:
    seqs = [int(m.rsplit(".", 1)[1]) for m in ids]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs


async def test_pause_resume_and_secret_rotation(rig: Rig, receiver: Receiver,
                                                worker: None) -> None:
    created = await rig.create(receiver.url, campaign="alpha")
    old = created["secret"]
    receiver.secrets.append(old)
    url = f"/admin/v1/webhooks/{created['id']}"
    paused = await rig.admin.patch(url, json={"paused": True}, headers=OPERATOR)
    assert (await paused.json())["status"] == "paused"
    await _rush(rig.engine, ("alpha",), 5)
    await asyncio.sleep(0.3)
    assert receiver.requests == 0
    rotated = await (await rig.admin.patch(url, json={"rotate_secret": True, "paused": False},
                                           headers=OPERATOR)).json()
    assert rotated["secret"] != old and rotated["old_secret_until"] is not None
    # The receiver still knows only the old secret: the old signature still verifies.
    stored = await rig.stored()
    await _until(lambda: set(receiver.ids()) >= set(stored), 10, "delivered, old secret")
    receiver.secrets[:] = [rotated["secret"]]  # and the new one verifies too
    assert (await rig.engine.claim("alpha", "late", "tee", 1)).outcome.name == "OK"
    await _until(lambda: len(set(receiver.ids())) > len(stored), 10, "delivered, new secret")
    assert receiver.refused_signature == 0
    gone = await rig.admin.delete(url, headers=OPERATOR)
    assert gone.status == 204
    assert (await rig.admin.get(url, headers=OPERATOR)).status == 404


async def test_ssrf_targets_are_refused(rig: Rig, receiver: Receiver) -> None:
    for url in ("http://169.254.169.254/latest/meta-data", "http://[::1]:9/x",
                "http://10.0.0.1/x", "ftp://example.com/x", "file:///etc/passwd",
                "http://user:pw@example.com/x"):
        resp = await rig.admin.post("/admin/v1/webhooks", json={"url": url, "events": ["*"]},
                                    headers=OPERATOR)
        assert resp.status == 400, url
        assert (await resp.json())["error"]["code"] in ("webhook_url_refused",
                                                        "invalid_request"), url
    # localhost is refused without the allow-list...
    guard = AddressGuard()
    assert await guard.check_resolved(receiver.url.replace("127.0.0.1", "localhost"))
    assert guard.check_url("http://169.254.169.254/") is not None
    assert guard.check_url("http://[::ffff:127.0.0.1]/") is not None
    # ... and by the worker at connect time: an endpoint allowed when it was made, then a
    # worker without the allow-list never reaches it (the resolver refuses the address).
    created = await rig.create(receiver.url.replace("127.0.0.1", "localhost"))
    receiver.secrets.append(created["secret"])
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer(rig.store, AddressGuard(), FAST).run(stop))
    await _rush(rig.engine, ("alpha",), 2)
    url = f"/admin/v1/webhooks/{created['id']}"
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            seen = await (await rig.admin.get(url, headers=OPERATOR)).json()
            if seen["failures"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert "refused" in seen["last_error"] and "not a public address" in seen["last_error"]
        assert receiver.requests == 0
    finally:
        stop.set()
        await task


async def test_a_worker_killed_mid_burst_delivers_everything_after_restart(
        rig: Rig, receiver: Receiver, wh_settings: Settings, tmp_path: Path) -> None:
    created = await rig.create(receiver.url)
    receiver.secrets.append(created["secret"])
    receiver.delay_s = 0.005
    await _rush(rig.engine, ("alpha", "beta"), 100)
    env = {**os.environ, "STAMPEDE_STORE_URL": wh_settings.resolved_store_url,
           "STAMPEDE_DATA_DIR": str(tmp_path), "STAMPEDE_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK,
           "STAMPEDE_WEBHOOK_POLL_MS": "50", "STAMPEDE_WEBHOOK_TIMEOUT_S": "1",
           "STAMPEDE_WEBHOOK_LEASE_MS": "1500"}  # the killed worker's lease expires soon

    def start() -> "subprocess.Popen[bytes]":
        return subprocess.Popen([sys.executable, "-m", "stampede.runtime.cli", "deliver"],
                                env=env, stderr=subprocess.DEVNULL)

    first = start()
    try:
        await _until(lambda: len(receiver.got) >= 40, 30, "the burst under way")
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = len(receiver.got)
    expected = await rig.stored()
    assert killed_at < len(expected), "the burst ended before the kill: nothing proven"
    second = start()
    try:
        await _until(lambda: set(receiver.ids()) >= set(expected), 30, "all after restart")
    finally:
        second.terminate()
        second.wait(10)
    ids = receiver.ids()
    assert set(ids) == set(expected)
    _in_order(ids)
    duplicates = len(ids) - len(set(ids))
    # At most the deliveries not yet recorded per campaign when it was killed:
    assert duplicates <= 2 * FLUSH_EVERY, duplicates
    assert receiver.refused_signature == 0


async def test_cursors_and_backoff_on_both_stores(
        sale: Engine, persister: Persister, store: Store, receiver: Receiver) -> None:
    """SQLite and PostgreSQL: a cursor moves only on a 2xx, a failure backs off."""
    hooks = Webhooks(store)
    created = await hooks.create(WebhookCreate(url=receiver.url, events=["claim_held"]))
    assert created.secret is not None
    receiver.secrets.append(created.secret)
    await _rush(sale, ("alpha",), 3)
    await persister.drain(timeout_s=30)
    deliverer = Deliverer(store, AddressGuard.from_spec(LOOPBACK), FAST)
    receiver.failing = True
    await _tick(deliverer)
    row = await hooks.row(created.id)
    assert row.failures == 1 and row.next_attempt_ms > 0 and not receiver.got
    receiver.failing = False
    await asyncio.sleep(FAST.backoff_base_s)
    await _tick(deliverer)
    assert sorted(body["data"]["user"] for _, body in receiver.got) == ["u0", "u1", "u2"]
    _in_order_of_subscribed(receiver.ids())
    await _tick(deliverer)  # nothing new: nothing sent again
    assert len(receiver.got) == 3
    assert (await hooks.row(created.id)).failures == 0


async def _tick(deliverer: Deliverer) -> None:
    async with aiohttp.ClientSession() as session:
        deliverer.session = session
        await deliverer.tick()


async def test_redirects_are_not_followed(sale: Engine, persister: Persister, store: Store,
                                          receiver: Receiver) -> None:
    app = web.Application()
    hits: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        hits.append("moved")
        raise web.HTTPTemporaryRedirect(receiver.url)

    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/moved"
        created = await Webhooks(store).create(WebhookCreate(url=url, events=["*"]))
        await _rush(sale, ("alpha",), 1)
        await persister.drain(timeout_s=30)
        await _tick(Deliverer(store, AddressGuard.from_spec(LOOPBACK), FAST))
        row = await Webhooks(store).row(created.id)
        assert hits == ["moved"] and receiver.requests == 0
        assert row.failures == 1 and "307" in row.last_error
    finally:
        await runner.cleanup()


# -- operating an endpoint: its delivery log, a test message, a replay, its backlog --------

def _hook(created: dict[str, Any], tail: str = "") -> str:
    return f"/admin/v1/webhooks/{created['id']}{tail}"


async def test_the_delivery_log_lists_attempts_newest_first(
        rig: Rig, receiver: Receiver, worker: None) -> None:
    created = await rig.create(receiver.url, events=["claim_held"], campaign="alpha")
    receiver.secrets.append(created["secret"])
    receiver.failing, receiver.delay_s = True, 0.03
    await _rush(rig.engine, ("alpha",), 3)
    await _until(lambda: receiver.requests >= 2, 10, "two failed attempts")
    receiver.failing = False
    await _until(lambda: len(set(receiver.ids())) >= 3, 10, "delivered after recovery")
    await asyncio.sleep(0.1)  # the last attempt's row is written after the answer
    resp = await rig.admin.get(_hook(created, "/deliveries"), headers=OPERATOR)
    assert resp.status == 200, await resp.text()
    log = await resp.json()
    assert len(log) == receiver.requests
    assert [d["at"] for d in log] == sorted((d["at"] for d in log), reverse=True)
    first_id = receiver.ids()[0]
    tries = [d for d in reversed(log) if d["message_id"] == first_id]
    assert [d["attempt"] for d in tries] == list(range(1, len(tries) + 1)) and len(tries) >= 2
    assert tries[0]["status"] == 500 and tries[0]["outcome"] == "failed"
    assert "down for maintenance" in tries[0]["error"]
    assert tries[-1]["status"] == 204 and tries[-1]["outcome"] == "delivered"
    assert tries[-1]["error"] is None
    assert all(d["event_type"] == "claim_held" for d in log)
    assert all(d["latency_ms"] >= 30 for d in log), [d["latency_ms"] for d in log]
    newest = await (await rig.admin.get(_hook(created, "/deliveries?limit=2"),
                                        headers=OPERATOR)).json()
    assert newest == log[:2]
    for bad in ("0", "501", "abc", "-1"):
        refused = await rig.admin.get(_hook(created, f"/deliveries?limit={bad}"),
                                      headers=OPERATOR)
        assert refused.status == 400, bad
        assert (await refused.json())["error"]["code"] == "invalid_request"
    missing = await rig.admin.get("/admin/v1/webhooks/wh_00000000000000000000/deliveries",
                                  headers=OPERATOR)
    assert missing.status == 404
    anonymous = await rig.admin.get(_hook(created, "/deliveries"))
    assert anonymous.status == 401


async def test_a_test_message_is_signed_sent_now_and_answered(
        rig: Rig, receiver: Receiver) -> None:
    created = await rig.create(receiver.url, campaign="alpha")
    receiver.secrets.append(created["secret"])
    receiver.delay_s = 0.02
    resp = await rig.admin.post(_hook(created, "/test"), headers=OPERATOR)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["outcome"] == "delivered" and answer["status"] == 204
    assert answer["latency_ms"] >= 20 and answer["error"] is None
    assert receiver.refused_signature == 0
    [(msg_id, body)] = receiver.got
    assert msg_id == answer["message_id"] and body["type"] == "webhook.test"
    assert body["data"] == {"endpoint": created["id"]}
    receiver.failing = True
    failed = await (await rig.admin.post(_hook(created, "/test"), headers=OPERATOR)).json()
    assert failed["outcome"] == "failed" and failed["status"] == 500
    assert "down for maintenance" in failed["error"]
    seen = await (await rig.admin.get(_hook(created), headers=OPERATOR)).json()
    assert seen["failures"] == 0 and seen["status"] == "active"  # a test moves nothing
    log = await (await rig.admin.get(_hook(created, "/deliveries"), headers=OPERATOR)).json()
    assert [(d["message_id"], d["event_type"], d["status"]) for d in log] == [
        (failed["message_id"], "webhook.test", 500), (msg_id, "webhook.test", 204)]
    missing = await rig.admin.post("/admin/v1/webhooks/wh_00000000000000000000/test",
                                   headers=OPERATOR)
    assert missing.status == 404


async def test_replay_sends_again_what_was_persisted_since(
        rig: Rig, receiver: Receiver, worker: None) -> None:
    created = await rig.create(receiver.url, campaign="alpha")
    receiver.secrets.append(created["secret"])
    await rig.engine.define_campaign("alpha", campaign_spec(stock=1000, per_user=None))
    for n in range(5):
        await rig.engine.claim("alpha", f"early{n}", "tee", 1)
    await _until(lambda: _users(receiver) >= {"early4"}, 10, "the early events delivered")
    await asyncio.sleep(0.05)
    early = len(receiver.got)
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    for n in range(4):
        await rig.engine.claim("alpha", f"late{n}", "tee", 1)
    await _until(lambda: _users(receiver) >= {"late3"}, 10, "the late events delivered")
    await asyncio.sleep(0.3)
    before = receiver.ids()
    late = before[early:]
    assert {body["data"].get("user") for _, body in receiver.got[early:]} == {
        f"late{n}" for n in range(4)}
    resp = await rig.admin.post(_hook(created, "/replay"), headers=OPERATOR,
                                json={"since": since.isoformat()})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["campaigns"] == {"alpha": int(late[0].rsplit(".", 1)[1])}
    await _until(lambda: len(receiver.got) >= len(before) + len(late), 10,
                 "the late events sent again")
    await asyncio.sleep(0.3)
    assert receiver.ids() == before + late  # same ids (and, checked by receiver, bodies)
    assert receiver.refused_signature == 0
    # A replay from the future moves nothing; a cursor never moves forward.
    future = await rig.admin.post(_hook(created, "/replay"), headers=OPERATOR,
                                  json={"since": "2999-01-01T00:00:00+00:00"})
    assert (await future.json())["campaigns"] == {}
    for bad in ({"since": "2026-01-01T00:00:00"}, {"since": "yesterday"}, {},
                {"since": "2026-01-01T00:00:00Z", "extra": 1}):
        refused = await rig.admin.post(_hook(created, "/replay"), headers=OPERATOR, json=bad)
        assert refused.status == 400, bad
        assert "code" in (await refused.json())["error"]
    missing = await rig.admin.post("/admin/v1/webhooks/wh_00000000000000000000/replay",
                                   headers=OPERATOR, json={"since": since.isoformat()})
    assert missing.status == 404


def _users(receiver: Receiver) -> set[str]:
    return {body["data"].get("user") for _, body in receiver.got}


def _backlog(endpoint_id: str) -> float | None:
    return REGISTRY.get_sample_value("stampede_webhook_backlog_events",
                                     {"endpoint": endpoint_id})


async def test_the_backlog_gauge_counts_events_waiting_per_endpoint(
        rig: Rig, receiver: Receiver) -> None:
    created = await rig.create(receiver.url, campaign="alpha")
    other = await rig.create(receiver.url, campaign="beta")
    receiver.secrets += [created["secret"], other["secret"]]
    await rig.admin.patch(_hook(created), json={"paused": True}, headers=OPERATOR)
    await _rush(rig.engine, ("alpha", "beta"), 4)
    deliverer = Deliverer(rig.store, AddressGuard.from_spec(LOOPBACK), FAST)
    deadline = time.monotonic() + 10
    while len(await rig.stored()) < 10:  # 2 definitions and 8 claims, persisted
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    stored = await rig.stored()
    await _tick(deliverer)
    alpha = sum(1 for m in stored if m.startswith("alpha."))
    assert _backlog(created["id"]) == alpha  # paused: everything waits
    assert _backlog(other["id"]) == 0  # active: delivered in this tick
    await rig.admin.patch(_hook(created), json={"paused": False}, headers=OPERATOR)
    await _tick(deliverer)
    await _tick(deliverer)
    assert _backlog(created["id"]) == 0
    await rig.admin.delete(_hook(other), headers=OPERATOR)
    await _tick(deliverer)
    assert _backlog(other["id"]) is None  # a removed endpoint's series goes too


async def test_a_poll_with_no_endpoint_is_one_query_and_drops_the_last_series(
        rig: Rig, receiver: Receiver) -> None:
    """With no endpoint a poll reads the endpoint table and nothing else (the worker
    runs beside every `serve`, most without webhooks); removing the last endpoint
    still drops its backlog series."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql.split()[0].upper())

    await _rush(rig.engine, ("alpha",), 3)
    deliverer = Deliverer(rig.store, AddressGuard.from_spec(LOOPBACK), FAST)
    event.listen(rig.store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await deliverer.tick()
        assert [s for s in statements if s == "SELECT"] == ["SELECT"]
        created = await rig.create(receiver.url, campaign="alpha")
        await rig.admin.patch(_hook(created), json={"paused": True}, headers=OPERATOR)
        statements.clear()
        await deliverer.tick()
        assert statements.count("SELECT") == 3  # endpoints, campaigns, cursors
        assert _backlog(created["id"]) is not None
        await rig.admin.delete(_hook(created), headers=OPERATOR)
        await deliverer.tick()
        assert _backlog(created["id"]) is None
    finally:
        event.remove(rig.store.engine.sync_engine, "before_cursor_execute", seen)


async def test_delivery_log_and_replay_queries_on_both_stores(
        sale: Engine, persister: Persister, store: Store, receiver: Receiver) -> None:
    """SQLite and PostgreSQL: the log's window numbering and the replay's cursor moves."""
    hooks = Webhooks(store)
    created = await hooks.create(WebhookCreate(url=receiver.url, events=["*"]))
    assert created.secret is not None
    receiver.secrets.append(created.secret)
    await _rush(sale, ("alpha",), 3)
    await persister.drain(timeout_s=30)
    deliverer = Deliverer(store, AddressGuard.from_spec(LOOPBACK), FAST)
    await _tick(deliverer)
    delivered = receiver.ids()
    assert len(delivered) >= 4
    log = await hooks.deliveries(created.id, 2)
    assert [d.message_id for d in log] == delivered[::-1][:2]
    assert all(d.attempt == 1 and d.status == 204 for d in log)
    assert await hooks.replay(created.id, 0) == {"alpha": 1}
    assert await hooks.replay(created.id, 0) == {}  # already back: nothing moved
    assert await hooks.replay("wh_00000000000000000000", 0) is None
    await _tick(deliverer)  # the same worker: it holds the endpoint's lease
    assert receiver.ids() == delivered + delivered


async def test_a_replay_during_a_delivery_in_flight_is_not_undone(
        sale: Engine, persister: Persister, store: Store, receiver: Receiver) -> None:
    hooks = Webhooks(store)
    created = await hooks.create(WebhookCreate(url=receiver.url, events=["*"]))
    assert created.secret is not None
    receiver.secrets.append(created.secret)
    await _rush(sale, ("alpha",), 2)
    await persister.drain(timeout_s=30)
    deliverer = Deliverer(store, AddressGuard.from_spec(LOOPBACK), FAST)
    await _tick(deliverer)
    first = receiver.ids()
    assert (await sale.claim("alpha", "late", "tee", 1)).outcome.name == "OK"
    await persister.drain(timeout_s=30)
    receiver.delay_s = 0.5
    in_flight = asyncio.create_task(_tick(deliverer))
    await _until(lambda: receiver.requests > len(first), 5, "the late event in flight")
    assert await hooks.replay(created.id, 0) == {"alpha": 1}
    await in_flight  # its answer must not move the cursor forward over the replay
    receiver.delay_s = 0
    after = receiver.ids()
    assert after[len(first):] == [f"alpha.{len(first) + 1}"]
    await _tick(deliverer)
    assert receiver.ids()[len(after):] == after  # everything again, in order
