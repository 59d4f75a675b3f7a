"""schemathesis against the generated specs, on a real `stampede serve`.

Two user identities (JWTs) and an operator: no 5xx, no response off its
schema, no request the spec calls invalid accepted. Examples are bounded so
the run fits CI.
"""

import re
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from stampede.api import admin, app, coupons, lookups, paid, public, queues
from stampede.api.auth import mint_user_token
from stampede.api.idempotency import KEY_PATTERN
from stampede.api.openapi import build_spec
from tests.system.service import Service, http

SECRET = "fuzz-secret-0123456789-0123456789-0123"
OPERATOR = "fuzz-operator-token"
USERS = ("alice", "bob")

public_schema = schemathesis.openapi.from_dict(
    build_spec("public", app.health.operations + public.api.operations + queues.api.operations
               + coupons.api.operations + lookups.api.operations + paid.api.operations,
               dev_auth=False))
admin_schema = schemathesis.openapi.from_dict(
    build_spec("admin", app.health.operations + admin.api.operations
               + coupons.admin_api.operations + lookups.admin_api.operations, dev_auth=False))
LOOKUPS = {op.path for op in lookups.api.operations + lookups.admin_api.operations}
"""Their cursors are opaque and since must precede until: a schema-valid request may
rightly get 400 there."""

CAMPAIGN = (b'{"name": "Fuzz", "opens_at": "2026-01-01T00:00:00Z", '
            b'"closes_at": "2099-01-01T00:00:00Z", "limits": {"per_user": 2}, '
            b'"skus": [{"sku": "tee", "price": 100, '
            b'"waves": [{"at": "2026-01-01T00:00:00Z", "qty": 1000}]}]}')


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("fuzz"), env={
        "STAMPEDE_DEV_AUTH": "0", "STAMPEDE_JWT_SECRET": SECRET,
        "STAMPEDE_ADMIN_TOKENS": f"operator:{OPERATOR},viewer:fuzz-viewer"})
    status, _ = http(f"{svc.admin_url}/admin/v1/campaigns/fuzz",
                     {"Authorization": f"Bearer {OPERATOR}"}, CAMPAIGN, "PUT")
    assert status == 201
    try:
        yield svc
    finally:
        svc.kill()
    assert "Traceback" not in svc.output()


FUZZ = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def _fresh_idempotency_key(case: schemathesis.Case) -> None:
    # Reusing one key across different generated requests is rightly a 422;
    # idempotency has its own tests, so each valid key here is made unique.
    key = (case.headers or {}).get("Idempotency-Key")
    if key is not None and re.match(KEY_PATTERN, key):
        case.headers["Idempotency-Key"] = uuid.uuid4().hex


@public_schema.parametrize()
@FUZZ
def test_public_api_conforms(case: schemathesis.Case, service: Service) -> None:
    _fresh_idempotency_key(case)
    user = USERS[hash(repr(case.body)) % 2]
    token = mint_user_token(SECRET, user)
    excluded = [positive_data_acceptance] if case.path in LOOKUPS else []
    case.call_and_validate(base_url=service.url, excluded_checks=excluded,
                           headers={"Authorization": f"Bearer {token}"})


@admin_schema.parametrize()
@FUZZ
def test_admin_api_conforms(case: schemathesis.Case, service: Service) -> None:
    _fresh_idempotency_key(case)
    # A schedule must close after it opens: a cross-field rule JSON Schema
    # cannot state, so schema-valid specs may rightly get 400 there.
    excluded = [positive_data_acceptance] if case.path == "/admin/v1/campaigns/{cid}" \
        or case.path in LOOKUPS else []
    case.call_and_validate(base_url=service.admin_url, excluded_checks=excluded,
                           headers={"Authorization": f"Bearer {OPERATOR}"})
