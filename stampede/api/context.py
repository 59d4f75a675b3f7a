"""Typed application state shared by the public and admin apps."""

from aiohttp import web

from stampede import Engine
from stampede.api.auth import Authenticator
from stampede.api.idempotency import IdempotencyGuard

ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("auth", Authenticator)
GUARD = web.AppKey("guard", IdempotencyGuard)
READY = web.AppKey("ready", dict[str, bool])
STORE_CHECK = web.AppKey("store_check", object)
DETAILS = web.AppKey("details", dict[str, object])
"""Shown by /readyz without deciding it (the persister's health), kept up by runtime."""
"""An async () -> bool that says whether the durable store answers, or None."""
"""`draining` flips to True on SIGTERM so /readyz fails first."""
