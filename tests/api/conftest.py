"""The public and admin apps on real loopback sockets, over a real Valkey."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stampede import Engine
from stampede.api.app import make_admin_app, make_public_app
from stampede.api.auth import Authenticator, parse_admin_tokens

JWT_SECRET = "test-secret-0123456789-0123456789"
OPERATOR = "op-token"
VIEWER = "view-token"


@dataclass
class Api:
    public: TestClient
    admin: TestClient
    engine: Engine

    @staticmethod
    def op() -> dict[str, str]:
        return {"Authorization": f"Bearer {OPERATOR}"}

    @staticmethod
    def viewer() -> dict[str, str]:
        return {"Authorization": f"Bearer {VIEWER}"}


@asynccontextmanager
async def serve_api(engine: Engine) -> AsyncIterator[Api]:
    """Both apps of `engine` on loopback test servers (the engine stays the caller's)."""
    auth = Authenticator(JWT_SECRET, True,
                         tuple(parse_admin_tokens(f"operator:{OPERATOR},viewer:{VIEWER}")))
    ready = {"draining": False}
    public = TestClient(TestServer(make_public_app(engine, auth, ready)))
    admin = TestClient(TestServer(make_admin_app(engine, auth, ready)))
    await public.start_server()
    await admin.start_server()
    try:
        yield Api(public, admin, engine)
    finally:
        await public.close()
        await admin.close()


@pytest.fixture
async def api(engine: Engine) -> AsyncIterator[Api]:
    async with serve_api(engine) as served:
        yield served
