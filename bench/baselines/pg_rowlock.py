"""The "typical web shop" claim service: one PostgreSQL transaction per claim.

    POST /v1/campaigns/{cid}/claims   {"sku": str, "qty": int}, user in X-User-Id
        BEGIN
          UPDATE stock SET available = available - qty WHERE ... AND available >= qty
          upsert user_claims (+qty) only while it stays <= the campaign's per-user limit
          INSERT INTO claims ... RETURNING id, expires_at
        COMMIT
    PUT /admin/setup    {"campaign", "skus": {sku: stock}, "per_user", "hold_ttl_s"}
                        drops and recreates the schema, seeds one campaign
    GET /admin/check?campaign=c    totals and the invariants (no oversell, no user over limit)

By default (--order stock-first) the stock UPDATE runs first: once sold out a
claim costs one statement and no write, which is what most requests of a
flash sale meet (measured 4.3k vs 3.3k answers/s). --order user-first locks the
user row first, so the hot stock row is held only for the insert and the
commit, and a user over the limit never touches it (3x faster when most
requests are over their limit). Both are correct. Holds never expire here (no
sweeper): the benchmark only claims.

    python -m bench.baselines.pg_rowlock --port 8080 --dsn postgresql://... \
        [--setup --campaign c1 --sku hot=500 --per-user 2] [--pool-size 20] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from bench.baselines import add_server_args, serve

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id text PRIMARY KEY, per_user int NOT NULL, hold_ttl_s int NOT NULL);
CREATE TABLE IF NOT EXISTS stock (
    campaign text NOT NULL, sku text NOT NULL, initial int NOT NULL,
    available int NOT NULL CHECK (available >= 0), PRIMARY KEY (campaign, sku));
CREATE TABLE IF NOT EXISTS user_claims (
    campaign text NOT NULL, user_id text NOT NULL, claimed int NOT NULL,
    PRIMARY KEY (campaign, user_id));
CREATE TABLE IF NOT EXISTS claims (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), campaign text NOT NULL,
    sku text NOT NULL, user_id text NOT NULL, qty int NOT NULL,
    status text NOT NULL DEFAULT 'held', created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS claims_campaign_user ON claims (campaign, user_id);
"""
DROP = "DROP TABLE IF EXISTS claims, user_claims, stock, campaigns"

# Counts the claim against the user's limit; no row back means over the limit
# (or no such campaign). The row lock on user_claims serialises one user's claims.
UPSERT_USER = """
INSERT INTO user_claims AS u (campaign, user_id, claimed)
SELECT $1, $2, $3 FROM campaigns c WHERE c.id = $1 AND $3 <= c.per_user
ON CONFLICT (campaign, user_id) DO UPDATE SET claimed = u.claimed + EXCLUDED.claimed
WHERE u.claimed + EXCLUDED.claimed <= (SELECT per_user FROM campaigns WHERE id = $1)
RETURNING u.claimed
"""
TAKE_STOCK = """
UPDATE stock SET available = available - $3
WHERE campaign = $1 AND sku = $2 AND available >= $3 RETURNING available
"""
INSERT_CLAIM = """
INSERT INTO claims (campaign, sku, user_id, qty, expires_at)
SELECT $1, $2, $3, $4, now() + make_interval(secs => c.hold_ttl_s)
FROM campaigns c WHERE c.id = $1 RETURNING id, expires_at
"""

POOL = web.AppKey("pool", asyncpg.Pool)
KNOWN = web.AppKey("known", dict)  # campaign -> set of SKUs, positives only
STOCK_FIRST = web.AppKey("stock_first", bool)


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=orjson.dumps(payload))


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}})


async def _known_skus(app: web.Application, conn: asyncpg.Connection, cid: str) -> set[str]:
    known: dict[str, set[str]] = app[KNOWN]
    if cid not in known:
        rows = await conn.fetch("SELECT sku FROM stock WHERE campaign = $1", cid)
        if not rows:
            return set()
        known[cid] = {r["sku"] for r in rows}
    return known[cid]


def _parse(raw: bytes) -> tuple[str, int]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Refused(400, "invalid_request", "body is not JSON") from None
    if not isinstance(body, dict) or set(body) - {"sku", "qty"}:
        raise _Refused(400, "invalid_request", "body must be {sku, qty}")
    sku, qty = body.get("sku"), body.get("qty", 1)
    if not isinstance(sku, str) or not sku or len(sku) > 64:
        raise _Refused(400, "invalid_request", "sku must be a non-empty string")
    if type(qty) is not int or not 1 <= qty <= 100:
        raise _Refused(400, "invalid_request", "qty must be an integer 1..100")
    return sku, qty


async def _count_user(conn: asyncpg.Connection, cid: str, user: str, qty: int) -> None:
    if await conn.fetchval(UPSERT_USER, cid, user, qty) is None:
        raise _Refused(409, "limit_exceeded", "per-user limit reached")


async def _take_stock(conn: asyncpg.Connection, cid: str, sku: str, qty: int) -> None:
    if await conn.fetchval(TAKE_STOCK, cid, sku, qty) is None:
        raise _Refused(409, "sold_out", "no stock left")


async def claim(request: web.Request) -> web.Response:
    cid = request.match_info["cid"]
    user = request.headers.get("X-User-Id", "")
    try:
        if not user or len(user) > 128:
            raise _Refused(401, "unauthorized", "X-User-Id is required")
        sku, qty = _parse(await request.read())
        async with request.app[POOL].acquire() as conn:
            skus = await _known_skus(request.app, conn, cid)
            if sku not in skus:
                raise _Refused(404, "not_found", "no such campaign or sku")
            async with conn.transaction():  # a _Refused inside rolls everything back
                if request.app[STOCK_FIRST]:
                    await _take_stock(conn, cid, sku, qty)
                    await _count_user(conn, cid, user, qty)
                else:
                    await _count_user(conn, cid, user, qty)
                    await _take_stock(conn, cid, sku, qty)
                row = await conn.fetchrow(INSERT_CLAIM, cid, sku, user, qty)
    except _Refused as r:
        return _error(r.status, r.code, r.message)
    except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
        return web.Response(status=503, content_type="application/json", headers={
            "Retry-After": "1"}, body=orjson.dumps(
                {"error": {"code": "unavailable", "message": type(exc).__name__}}))
    return _json(201, {"claim_id": str(row["id"]), "status": "held",
                       "expires_at": row["expires_at"].isoformat(timespec="milliseconds")})


async def setup_schema(conn: asyncpg.Connection, campaign: str, skus: dict[str, int],
                       per_user: int, hold_ttl_s: int = 600) -> None:
    """Drop and recreate the tables, then seed one campaign."""
    async with conn.transaction():
        await conn.execute(DROP)
        await conn.execute(SCHEMA)
        await conn.execute("INSERT INTO campaigns VALUES ($1, $2, $3)",
                           campaign, per_user, hold_ttl_s)
        await conn.executemany("INSERT INTO stock VALUES ($1, $2, $3, $3)",
                               [(campaign, s, n) for s, n in skus.items()])


async def check(conn: asyncpg.Connection, campaign: str) -> dict[str, Any]:
    """Recompute the invariants from the claims table itself, not the counters."""
    per_user = await conn.fetchval("SELECT per_user FROM campaigns WHERE id = $1", campaign)
    skus = await conn.fetch("""
        SELECT s.sku, s.initial, s.available, coalesce(sum(c.qty), 0)::int AS claimed
        FROM stock s LEFT JOIN claims c ON c.campaign = s.campaign AND c.sku = s.sku
        WHERE s.campaign = $1 GROUP BY s.sku, s.initial, s.available ORDER BY s.sku""", campaign)
    users = await conn.fetchrow("""
        SELECT count(*)::int AS users, coalesce(max(q), 0)::int AS max_per_user,
               count(*) FILTER (WHERE q > $2)::int AS over_limit
        FROM (SELECT sum(qty) AS q FROM claims WHERE campaign = $1 GROUP BY user_id) t""",
                                campaign, per_user or 0)
    drift = await conn.fetchval("""
        SELECT count(*)::int
        FROM (SELECT user_id, claimed FROM user_claims WHERE campaign = $1) u
        FULL JOIN (SELECT user_id, sum(qty) AS q FROM claims WHERE campaign = $1
                   GROUP BY user_id) c USING (user_id)
        WHERE u.claimed IS DISTINCT FROM c.q""", campaign)
    sku_rows = [dict(r) for r in skus]
    oversold = [r["sku"] for r in sku_rows
                if r["claimed"] > r["initial"] or r["initial"] - r["available"] != r["claimed"]]
    return {"campaign": campaign, "per_user": per_user, "skus": sku_rows,
            "stock": sum(r["initial"] for r in sku_rows),
            "claimed": sum(r["claimed"] for r in sku_rows),
            "users_with_claims": users["users"], "max_per_user": users["max_per_user"],
            "users_over_limit": users["over_limit"], "counter_drift": drift,
            "oversold_skus": oversold,
            "ok": per_user is not None and not oversold and users["over_limit"] == 0
                  and drift == 0}


async def admin_setup(request: web.Request) -> web.Response:
    try:
        spec = orjson.loads(await request.read())
        campaign, skus = str(spec["campaign"]), {str(k): int(v) for k, v in spec["skus"].items()}
        per_user, ttl = int(spec.get("per_user", 1)), int(spec.get("hold_ttl_s", 600))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return _error(400, "invalid_request",
                      'expected {"campaign", "skus": {sku: n}, "per_user", "hold_ttl_s"}')
    async with request.app[POOL].acquire() as conn:
        await setup_schema(conn, campaign, skus, per_user, ttl)
    request.app[KNOWN].clear()
    return _json(200, {"campaign": campaign, "skus": skus, "per_user": per_user})


async def admin_check(request: web.Request) -> web.Response:
    campaign = request.query.get("campaign", "")
    async with request.app[POOL].acquire() as conn:
        return _json(200, await check(conn, campaign))


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    app[KNOWN] = {}
    app[STOCK_FIRST] = args.order == "stock-first"

    async def pool_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[POOL] = await asyncpg.create_pool(args.dsn, min_size=args.pool_size,
                                              max_size=args.pool_size)
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/v1/campaigns/{cid}/claims", claim)
    app.router.add_put("/admin/setup", admin_setup)
    app.router.add_get("/admin/check", admin_check)
    app.router.add_get("/healthz", healthz)
    return app


async def _prepare(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.dsn)
    try:
        if args.setup:
            skus = dict(s.split("=", 1) for s in args.sku) if args.sku else {"hot": "500"}
            await setup_schema(conn, args.campaign, {k: int(v) for k, v in skus.items()},
                               args.per_user, args.hold_ttl_s)
        else:
            await conn.execute(SCHEMA)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_args(parser)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--pool-size", type=int, default=20,
                        help="connections per worker process")
    parser.add_argument("--setup", action="store_true",
                        help="drop, recreate and seed before serving")
    parser.add_argument("--campaign", default="c1")
    parser.add_argument("--sku", action="append", metavar="SKU=N",
                        help="stock to seed (repeatable; default hot=500)")
    parser.add_argument("--per-user", type=int, default=2)
    parser.add_argument("--hold-ttl-s", type=int, default=600)
    parser.add_argument("--order", choices=["user-first", "stock-first"], default="stock-first",
                        help="user-first: the hot stock row is locked for less time; "
                             "stock-first: a sold-out claim costs one statement")
    args = parser.parse_args(argv)
    asyncio.run(_prepare(args))  # once, before any worker exists
    serve(make_app, args)


if __name__ == "__main__":
    main()
