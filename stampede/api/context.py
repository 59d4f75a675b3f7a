"""Typed state: the apps' shared objects, and the caller a route's declaration admits."""

from aiohttp import web

from stampede import Engine
from stampede.api.auth import AdminToken, Authenticator, User
from stampede.api.idempotency import IdempotencyGuard
from stampede.domain.coupons.service import Merchant
from stampede.domain.tickets import Scanner
from stampede.durable.store import Store
from stampede.durable.webhooks import Webhooks

ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("auth", Authenticator)
GUARD = web.AppKey("guard", IdempotencyGuard)
READY = web.AppKey("ready", dict[str, bool])
"""`draining` flips to True on SIGTERM so /readyz fails first."""
WEBHOOKS = web.AppKey("webhooks", Webhooks)
"""Webhook endpoints in the durable store (admin listener; absent without a store)."""
DURABLE = web.AppKey("durable", Store)
"""The durable store the query API reads (stampede/api/lookups.py); absent: 503."""
STORE_CHECK = web.AppKey("store_check", object)
DETAILS = web.AppKey("details", dict[str, object])
"""Shown by /readyz without deciding it (the persister's health), kept up by runtime."""
"""An async () -> bool that says whether the durable store answers, or None."""

# Set by the router before the handler runs, as the route's `auth` says:
USER = web.RequestKey("user", User)
"""auth="user": the public caller."""
ADMIN = web.RequestKey("admin", AdminToken)
"""auth="viewer" or "operator": the admin token (its role allows the route)."""
MERCHANT = web.RequestKey("merchant", Merchant)
"""auth="merchant": the merchant the bearer token belongs to."""
SCANNER = web.RequestKey("scanner", Scanner)
"""auth="scanner": the door scanner (venue, gate) the bearer token belongs to."""
