"""Typed application state shared by the public and admin apps."""

from aiohttp import web

from engine import Engine
from gateway.auth import Authenticator

ENGINE = web.AppKey("engine", Engine)
AUTH = web.AppKey("auth", Authenticator)
READY = web.AppKey("ready", dict[str, bool])
"""`draining` flips to True on SIGTERM so /readyz fails first."""
