"""The query and export API over a real store (SQLite and PostgreSQL) and a real Valkey:
exact filters, keyset pages that stay stable while claims are written, lookups with
their history, the audit log, merchants' settlement, and who may see what."""

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert

from stampede import Engine, Outcome
from stampede.api.app import make_admin_app, make_public_app
from stampede.api.auth import Authenticator, parse_admin_tokens
from stampede.api.context import DURABLE
from stampede.domain.coupons.spec import MerchantSpec, RedemptionRequest
from stampede.domain.models import CampaignPatch
from stampede.durable.persister import Persister
from stampede.durable.queries import encode_cursor
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from tests.conftest import campaign_spec
from tests.coupons.helpers import drop_spec

VIEWER = {"Authorization": "Bearer view-token"}
OPERATOR = {"Authorization": "Bearer op-token"}


@dataclass
class Served:
    admin: TestClient
    public: TestClient
    engine: Engine
    store: Store
    persister: Persister

    async def get(self, path: str, headers: dict[str, str] | None = None,
                  **params: Any) -> Any:
        client = self.admin if path.startswith("/admin/") else self.public
        resp = await client.get(path, params=params, headers=headers or VIEWER)
        assert resp.status == 200, (path, params, await resp.text())
        return await resp.json()

    async def refused(self, path: str, params: dict[str, str] | None = None,
                      status: int = 400) -> str:
        client = self.admin if path.startswith("/admin/") else self.public
        resp = await client.get(path, params=params or {}, headers=VIEWER)
        body = await resp.json()
        assert resp.status == status, (path, params, body)
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
        return str(body["error"]["message"])

    async def walk(self, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
        """Every item of a listing, page after page."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            extra = {"cursor": cursor} if cursor else {}
            page = await self.get(path, limit=limit, **params, **extra)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items


@pytest.fixture
async def served(sale: Engine, store: Store, persister: Persister) -> AsyncIterator[Served]:
    auth = Authenticator("test-secret-0123456789-0123456789", True,
                         tuple(parse_admin_tokens("operator:op-token,viewer:view-token")))
    ready = {"draining": False}
    admin_app = make_admin_app(sale, auth, ready, metrics=False)
    public_app = make_public_app(sale, auth, ready, metrics=False)
    for app in (admin_app, public_app):
        app[DURABLE] = store
    admin, public = TestClient(TestServer(admin_app)), TestClient(TestServer(public_app))
    await admin.start_server()
    await public.start_server()
    try:
        yield Served(admin, public, sale, store, persister)
    finally:
        await admin.close()
        await public.close()


def user(uid: str) -> dict[str, str]:
    return {"X-User-Id": uid}


async def _claims(engine: Engine, cid: str, n: int) -> list[Any]:
    """n claims by 5 users over two SKUs; every third confirmed, every fifth cancelled."""
    made = []
    for i in range(n):
        uid, sku = f"u{i % 5}", ("tee", "cap")[i % 2]
        r = await engine.claim(cid, uid, sku)
        assert r.outcome is Outcome.OK, r
        status = "held"
        if i % 3 == 0:
            assert (await engine.confirm(r.claim.claim_id, uid)).outcome is Outcome.OK
            status = "confirmed"
        elif i % 5 == 0:
            assert (await engine.cancel(r.claim.claim_id, uid)).outcome is Outcome.OK
            status = "cancelled"
        made.append((r.claim.claim_id, uid, sku, status, r.claim.created_at))
    return made


async def test_claim_filters_are_exact_and_pages_cover_each_claim_once(served: Served) -> None:
    engine = served.engine
    await engine.define_campaign("c1", campaign_spec(stock=100, per_user=None,
                                                     skus=("tee", "cap")))
    await engine.define_campaign("c2", campaign_spec(stock=10, per_user=None))
    made = await _claims(engine, "c1", 40)
    other = await engine.claim("c2", "u1", "tee")
    await served.persister.drain()

    path = "/admin/v1/campaigns/c1/claims"
    everything = await served.walk(path, limit=7)
    assert [c["claim_id"] for c in everything] == [m[0] for m in sorted(
        made, key=lambda m: (m[4], m[0]))]
    assert other.claim.claim_id not in {c["claim_id"] for c in everything}
    for filters in ({"user": "u2"}, {"sku": "cap"}, {"status": "confirmed"},
                    {"status": "cancelled", "sku": "tee"}, {"user": "u3", "status": "held"}):
        got = {c["claim_id"] for c in await served.walk(path, limit=4, **filters)}
        want = {m[0] for m in made
                if all(m[{"user": 1, "sku": 2, "status": 3}[k]] == v
                       for k, v in filters.items())}
        assert got == want and want, filters
    cut = sorted(m[4] for m in made)[20]
    since = {c["claim_id"] for c in await served.walk(path, limit=9, since=cut.isoformat())}
    until = {c["claim_id"] for c in await served.walk(path, limit=9, until=cut.isoformat())}
    assert since == {m[0] for m in made if m[4] >= cut}
    assert until == {m[0] for m in made if m[4] < cut}
    assert since | until == {m[0] for m in made} and not since & until


async def test_pages_stay_stable_while_claims_are_written(served: Served) -> None:
    engine = served.engine
    await engine.define_campaign("c1", campaign_spec(stock=2000, per_user=None,
                                                     skus=("tee", "cap")))
    before = await _claims(engine, "c1", 30)
    await served.persister.drain()
    stop = asyncio.Event()
    written: list[str] = []

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            r = await engine.claim("c1", f"w{i % 50}", "tee")
            written.append(r.claim.claim_id)
            i += 1
            if i % 5 == 0:
                await served.persister.step()
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    while len(written) < 10:  # the writer is under way before the first page
        await asyncio.sleep(0.005)
    at_start = len(written)
    try:
        pages: list[dict[str, Any]] = []
        cursor = None
        while len(pages) < 200:  # the writer keeps adding: stop after a while
            extra = {"cursor": cursor} if cursor else {}
            page = await served.get("/admin/v1/campaigns/c1/claims", limit=3, **extra)
            pages.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            await asyncio.sleep(0.005)
    finally:
        at_end = len(written)
        stop.set()
        await task
    ids = [c["claim_id"] for c in pages]
    assert len(ids) == len(set(ids)), "a claim was shown twice"
    keys = [(datetime.fromisoformat(c["created_at"]), c["claim_id"]) for c in pages]
    assert keys == sorted(keys)
    assert {m[0] for m in before} <= set(ids), "a claim stored before paging was skipped"
    assert at_end > at_start and set(ids) & set(written), "no write happened while paging"
    # Once written and stored, the same walk sees every claim exactly once.
    await served.persister.drain()
    final = [c["claim_id"] for c in await served.walk("/admin/v1/campaigns/c1/claims", 250)]
    assert sorted(final) == sorted({m[0] for m in before} | set(written))
    assert ids == final[:len(ids)], "pages read while writing are a prefix of the whole"


async def test_users_see_only_their_own_claims(served: Served) -> None:
    engine = served.engine
    await engine.define_campaign("c1", campaign_spec(stock=100, per_user=None))
    await engine.define_campaign("c2", campaign_spec(stock=100, per_user=None))
    mine = []
    for cid in ("c1", "c2", "c1"):
        mine.append((await engine.claim(cid, "alice", "tee")).claim.claim_id)
        await asyncio.sleep(0.005)  # each its own millisecond: "newest" is then exact
    theirs = (await engine.claim("c1", "bob", "tee")).claim.claim_id
    await served.persister.drain()

    page = await served.get("/v1/me/claims", headers=user("alice"), limit=2)
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = await served.get("/v1/me/claims", headers=user("alice"),
                            cursor=page["next_cursor"])
    got = [c["claim_id"] for c in page["items"] + rest["items"]]
    assert got == list(reversed(mine)), "newest first, across campaigns, only alice's"
    assert rest["next_cursor"] is None
    assert {c["user"] for c in page["items"] + rest["items"]} == {"alice"}
    # Another user's claim is a 404 to alice, whatever she tries.
    resp = await served.public.get(f"/v1/claims/{theirs}", headers=user("alice"))
    assert resp.status == 404
    resp = await served.public.get("/v1/me/claims", headers=user("alice"),
                                   params={"user": "bob"})
    assert resp.status == 400 and "user" in (await resp.json())["error"]["message"]
    assert (await served.public.get("/v1/me/claims")).status == 401


async def test_lookups_give_the_record_and_the_events_that_made_it(served: Served) -> None:
    engine = served.engine
    spec = campaign_spec(stock=1, per_user=None, waitlist={"max_length": 10})
    await engine.define_campaign("c1", spec, actor="operator-0")
    await engine.define_campaign("room", campaign_spec(waiting_room={"rate_per_s": 1000}))
    assert (await engine.take_ticket("room", "bob"))[0] is Outcome.OK
    first = await engine.claim("c1", "alice", "tee")
    await engine.confirm(first.claim.claim_id, "alice")
    joined = await engine.join_waitlist("c1", "bob", "tee")
    assert joined[0] is Outcome.OK
    await served.persister.drain()

    claim = await served.get(f"/admin/v1/claims/{first.claim.claim_id}")
    assert claim["record"]["status"] == "confirmed" and claim["record"]["user"] == "alice"
    assert [e["type"] for e in claim["history"]] == ["claim_held", "claim_confirmed"]
    assert all(e["fields"]["claim"] == first.claim.claim_id for e in claim["history"])

    bob = await served.get("/admin/v1/users/bob")
    assert bob["claims"] == [] and [w["status"] for w in bob["waitlist"]] == ["waiting"]
    assert bob["waitlist"][0]["sku"] == "tee" and bob["events"][0]["type"] == "waitlist_joined"
    [ticket] = bob["queue_tickets"]
    assert ticket["campaign_id"] == "room" and ticket["status"] in ("waiting", "admitted")
    assert ticket["admission_token"] is None, "a viewer never gets the user's admission"
    alice = await served.get("/admin/v1/users/alice")
    assert [c["claim_id"] for c in alice["claims"]] == [first.claim.claim_id]
    assert {e["type"] for e in alice["events"]} == {"claim_held", "claim_confirmed"}
    assert not alice["truncated"] and alice["queue_tickets"] == []

    missing = "c1.0123456789abcdef0123"
    for kind in ("claims", "coupons", "redemptions"):
        message = await served.refused(f"/admin/v1/{kind}/{missing}", status=404)
        assert missing in message
    assert "claim_id" in await served.refused("/admin/v1/claims/nope")


async def test_coupon_lookups_merchants_and_settlement(served: Served) -> None:
    engine = served.engine
    await engine.define_campaign("d1", drop_spec(stock=50))
    tokens = {m: (await engine.coupons.put_merchant(m, MerchantSpec(name=m))).token
              for m in ("m1", "m2")}
    m1, m2 = (await engine.coupons.merchant(tokens["m1"]),
              await engine.coupons.merchant(tokens["m2"]))
    assert m1 is not None and m2 is not None
    coupons = []
    for i in range(6):
        r = await engine.coupons.claim("d1", f"u{i}", "five")
        assert r.outcome is Outcome.OK, r
        coupons.extend(r.view.coupons)
    redeemed = []
    for i, c in enumerate(coupons):
        who = m1 if i < 4 else m2
        r = await engine.coupons.redeem(who, RedemptionRequest(
            code=c.code or "", order_id=f"o{i}", order_amount=1000 + i))
        assert r.outcome is Outcome.OK, r
        redeemed.append(r.view)
    rolled = redeemed[0].redemption_id
    assert (await engine.coupons.rollback(rolled, "m1")).outcome is Outcome.OK
    await served.persister.drain()

    mine = await served.get("/v1/merchant/redemptions",
                            headers={"Authorization": f"Bearer {tokens['m1']}"})
    assert {r["redemption_id"] for r in mine["items"]} == \
        {r.redemption_id for r in redeemed[:4]}
    assert {r["merchant_id"] for r in mine["items"]} == {"m1"}
    theirs = await served.get("/v1/merchant/redemptions",
                              headers={"Authorization": f"Bearer {tokens['m2']}"})
    assert {r["redemption_id"] for r in theirs["items"]} == \
        {r.redemption_id for r in redeemed[4:]}
    # A merchant cannot widen its view: there is no merchant parameter for it.
    resp = await served.public.get("/v1/merchant/redemptions", params={"merchant": "m2"},
                                   headers={"Authorization": f"Bearer {tokens['m1']}"})
    assert resp.status == 400
    assert (await served.public.get("/v1/merchant/redemptions")).status == 401

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = {"since": day.isoformat(), "until": (day + timedelta(days=1)).isoformat()}
    report = await served.get("/v1/merchant/settlement",
                              headers={"Authorization": f"Bearer {tokens['m1']}"}, **window)
    assert report["merchant_id"] == "m1" and len(report["days"]) == 1
    assert report["days"][0] == {**report["total"], "day": day.date().isoformat()}
    assert report["total"] == {"redemptions": 4, "redeemed": 3, "rolled_back": 1,
                               "discount": 3 * 500, "order_amount": 1001 + 1002 + 1003}
    admin_report = await served.get("/admin/v1/merchants/m1/settlement", **window)
    assert admin_report == report

    merchants = await served.get("/admin/v1/merchants")
    assert [(m["merchant_id"], m["redemptions"], m["order_amount"])
            for m in merchants["items"]] == [("m1", 4, 3006), ("m2", 2, 1004 + 1005)]
    only_m2 = await served.walk("/admin/v1/redemptions", 1, merchant="m2")
    assert {r["redemption_id"] for r in only_m2} == {r.redemption_id for r in redeemed[4:]}
    keys = [(datetime.fromisoformat(r["redeemed_at"]), r["redemption_id"]) for r in only_m2]
    assert keys == sorted(keys) and len(only_m2) == 2  # in time order (ties by id)

    record = await served.get(f"/admin/v1/redemptions/{rolled}")
    assert record["record"]["status"] == "rolled_back"
    assert [e["type"] for e in record["history"]] == ["coupon_redeemed", "coupon_rolled_back"]
    coupon = await served.get(f"/admin/v1/coupons/{redeemed[0].coupon_id}")
    assert [e["type"] for e in coupon["history"]][:2] == ["coupon_issued", "coupon_redeemed"]
    u0 = await served.get("/admin/v1/users/u0")
    assert [c["coupon_id"] for c in u0["coupons"]] == [coupons[0].coupon_id]
    assert [r["redemption_id"] for r in u0["redemptions"]] == [rolled]


async def test_audit_log_says_who_changed_what_before_and_after(served: Served) -> None:
    engine = served.engine
    await engine.define_campaign("c1", campaign_spec(stock=5), actor="operator-0")
    await engine.define_campaign("c1", campaign_spec(stock=9), actor="operator-1")
    await engine.patch_campaign("c1", CampaignPatch(state="paused"), actor="operator-0")
    await engine.adjust_stock("c1", "tee", 3, actor="operator-1")
    await engine.define_campaign("c2", campaign_spec(stock=1), actor="operator-0")
    await served.persister.drain()

    log = await served.walk("/admin/v1/audit-log", 2, campaign="c1")
    assert [(e["type"], e["actor"]) for e in log] == [
        ("campaign_defined", "operator-0"), ("campaign_defined", "operator-1"),
        ("campaign_patched", "operator-0"), ("stock_adjusted", "operator-1")]
    first, replaced, paused, stocked = log
    assert first["before"] is None
    assert replaced["before"] == first["after"] and replaced["before"] != replaced["after"]
    assert paused["before"]["state"] != "paused" and paused["after"]["state"] == "paused"
    assert stocked["before"] == {"sku": "tee", "available": 9}
    assert stocked["after"] == {"sku": "tee", "available": 12}
    by_actor = await served.walk("/admin/v1/audit-log", 10, actor="operator-1")
    assert [(e["campaign_id"], e["type"]) for e in by_actor] == [
        ("c1", "campaign_defined"), ("c1", "stock_adjusted")]
    assert len(await served.walk("/admin/v1/audit-log", 10)) == 5

    events = await served.walk("/admin/v1/campaigns/c1/events", 3,
                               type="campaign_patched,stock_adjusted")
    assert [e["type"] for e in events] == ["campaign_patched", "stock_adjusted"]
    every = await served.walk("/admin/v1/campaigns/c1/events", 3)
    assert [e["seq"] for e in every] == list(range(1, len(every) + 1))


async def test_a_viewer_reads_everything_and_changes_nothing(served: Served) -> None:
    engine = served.engine
    await engine.define_campaign("c1", campaign_spec(stock=5))
    await served.persister.drain()
    for path in ("/admin/v1/campaigns", "/admin/v1/campaigns/c1/claims",
                 "/admin/v1/campaigns/c1/events", "/admin/v1/users/u1", "/admin/v1/audit-log",
                 "/admin/v1/merchants", "/admin/v1/redemptions"):
        await served.get(path)
    writes = [("PATCH", "/admin/v1/campaigns/c1", {"state": "paused"}),
              ("POST", "/admin/v1/campaigns/c1/skus/tee/stock", {"delta": 5}),
              ("PUT", "/admin/v1/campaigns/c9", msgspec.to_builtins(campaign_spec()))]
    for method, path, body in writes:
        resp = await served.admin.request(method, path, json=body, headers=VIEWER)
        assert resp.status == 403, (method, path)
        assert (await resp.json())["error"]["code"] == "forbidden"
    stats = await engine.stats("c1")
    assert stats is not None and stats.state == "open" and stats.skus[0].available == 5
    assert await engine.stats("c9") is None
    listed = await served.get("/admin/v1/campaigns")
    assert [c["id"] for c in listed["campaigns"]] == ["c1"]


async def test_bad_parameters_are_refused_naming_them(served: Served) -> None:
    await served.engine.define_campaign("c1", campaign_spec(stock=5))
    await served.engine.define_campaign("c2", campaign_spec(stock=5))
    for i in range(3):
        await served.engine.claim("c1", f"u{i}", "tee")
    await served.persister.drain()
    claims = "/admin/v1/campaigns/c1/claims"
    page = await served.get(claims, limit=1)
    events_page = await served.get("/admin/v1/campaigns/c1/events", limit=1)
    cases: list[tuple[str, dict[str, str], str]] = [
        (claims, {"cursor": "!!"}, "cursor"),
        (claims, {"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        (claims, {"cursor": events_page["next_cursor"]}, "cursor"),  # another listing's
        ("/admin/v1/campaigns/c1/events", {"cursor": page["next_cursor"]}, "cursor"),
        (claims, {"limit": "0"}, "limit"), (claims, {"limit": "1001"}, "limit"),
        (claims, {"limit": "ten"}, "limit"),
        (claims, {"since": "yesterday"}, "since"),
        (claims, {"since": "2026-12-01T00:00:00"}, "since"),  # no UTC offset
        (claims, {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
         "since"),
        (claims, {"status": "sold"}, "status"), (claims, {"user": "a b"}, "user"),
        (claims, {"format": "xml"}, "format"), (claims, {"colour": "red"}, "colour"),
        (claims, {"format": "csv", "limit": "5"}, "limit"),
        ("/admin/v1/campaigns/c1/events", {"type": "Bad-Type"}, "type"),
        ("/admin/v1/merchants/m1/settlement", {"since": "2026-12-01T00:00:00Z"}, "until"),
        ("/admin/v1/merchants/m1/settlement", {"since": "2024-01-01T00:00:00Z",
                                               "until": "2026-01-01T00:00:00Z"}, "until"),
        ("/admin/v1/users/u1", {"limit": "5000"}, "limit"),
        (claims, {"cursor": encode_cursor("claims", [1 << 70, "x"])}, "cursor"),  # not BIGINT
    ]
    for path, params, named in cases:
        message = await served.refused(path, params)
        assert named in message, (path, params, message)
    # An offset sent unencoded ("+" reads as a space in a query) is still understood.
    resp = await served.admin.get(f"{claims}?since=2000-01-01T01:00:00+01:00", headers=VIEWER)
    assert resp.status == 200 and len((await resp.json())["items"]) == 3
    # The claims listing of one campaign does not take another's cursor as its own key.
    assert (await served.get("/admin/v1/campaigns/c2/claims", cursor=page["next_cursor"])
            )["items"] == []


async def test_exports_stream_csv_and_ndjson_with_the_filters(served: Served) -> None:
    engine = served.engine
    await engine.define_campaign("c1", campaign_spec(stock=100, per_user=None,
                                                     skus=("tee", "cap")))
    made = await _claims(engine, "c1", 12)
    await served.persister.drain()
    path = "/admin/v1/campaigns/c1/claims"
    resp = await served.admin.get(path, params={"format": "csv", "sku": "tee"}, headers=VIEWER)
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="claims-c1.csv"'
    lines = (await resp.text()).splitlines()
    assert lines[0].split(",")[:3] == ["claim_id", "campaign_id", "user"]
    assert sorted(line.split(",")[0] for line in lines[1:]) == \
        sorted(m[0] for m in made if m[2] == "tee")
    resp = await served.admin.get(path, headers={**VIEWER, "Accept": "application/x-ndjson"})
    assert resp.content_type == "application/x-ndjson"
    rows = [msgspec.json.decode(line) for line in (await resp.text()).splitlines()]
    assert [r["claim_id"] for r in rows] == [r["claim_id"] for r in await served.walk(path, 5)]
    events = await served.admin.get("/admin/v1/campaigns/c1/events",
                                    params={"format": "csv", "type": "claim_confirmed"},
                                    headers=VIEWER)
    assert len((await events.text()).splitlines()) == 1 + sum(
        1 for m in made if m[3] == "confirmed")


EXPORT_ROWS = 100_000


async def test_an_export_of_100k_claims_streams_in_bounded_memory(served: Served) -> None:
    """The whole export passes through, yet memory holds about one chunk of it at a time."""
    base = 1_790_000_000_000
    async with served.store.begin() as conn:
        for start in range(0, EXPORT_ROWS, 10_000):
            await conn.execute(insert(t.claims), [
                {"claim_id": f"big.{i:020x}", "campaign_id": "big", "user_id": f"u{i % 977}",
                 "sku": "tee", "qty": 1, "price": 1999, "status": "confirmed",
                 "deadline_ms": base + i + 600_000, "created_ms": base + i, "updated_seq": i}
                for i in range(start, start + 10_000)])
    for fmt in ("csv", "ndjson"):
        traced = fmt == "csv"  # tracing is slow: one format measures memory, both count rows
        if traced:
            tracemalloc.start()
        try:
            started = time.perf_counter()
            resp = await served.admin.get("/admin/v1/campaigns/big/claims",
                                          params={"format": fmt}, headers=VIEWER)
            assert resp.status == 200
            lines = size = 0
            last = b""
            async for chunk in resp.content.iter_chunked(1 << 16):
                lines += chunk.count(b"\n")
                size += len(chunk)
                last = (last + chunk)[-400:]
            took = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory() if traced else (0, 0)
        finally:
            tracemalloc.stop()
        assert lines == EXPORT_ROWS + (fmt == "csv")
        assert f"big.{EXPORT_ROWS - 1:020x}".encode() in last  # in order, to the last row
        print(f"{fmt}: {size / 1e6:.1f} MB in {took:.1f} s, peak traced {peak / 1e6:.1f} MB")
        assert size > 10_000_000
        if traced:  # the rows as objects would be several times the export's size
            assert peak < size / 4, (size, peak)
