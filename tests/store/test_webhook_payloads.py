"""The admin OpenAPI document's `webhooks`: every subscribable event type, with an
example, the Standard Webhooks headers, and schemas that real deliveries satisfy."""

from typing import Any

import jsonschema_rs
import msgspec

from stampede.api.openapi import build_spec
from stampede.api.webhook_spec import SIGNATURE_HEADERS, webhooks_spec
from stampede.durable import webhook_payloads
from stampede.durable.webhooks import EVENT_TYPES
from tests.conftest import campaign_spec
from tests.store.test_webhooks import (  # noqa: F401 (pytest fixtures)
    Receiver,
    Rig,
    _until,
    receiver,
    rig,
    wh_settings,
    worker,
)

OPERATOR = {"Authorization": "Bearer op-token"}


def _validator(spec: dict[str, Any], event_type: str) -> Any:
    """A JSON Schema validator of `event_type`'s body, resolving refs in the document."""
    body = spec["webhooks"][event_type]["post"]["requestBody"]["content"]["application/json"]
    return jsonschema_rs.Draft202012Validator({**body["schema"],
                                               "components": spec["components"]})


def _spec() -> dict[str, Any]:
    return build_spec("t", [], False, webhooks_spec())


def test_every_subscribable_event_type_is_documented_with_a_valid_example() -> None:
    spec = _spec()
    assert set(spec["webhooks"]) == set(EVENT_TYPES) and len(EVENT_TYPES) > 20
    for event_type, item in spec["webhooks"].items():
        post = item["post"]
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
        assert headers == set(SIGNATURE_HEADERS)
        body = post["requestBody"]["content"]["application/json"]
        example = body["example"]
        assert example["type"] == event_type and example["version"] == webhook_payloads.VERSION
        _validator(spec, event_type).validate(example)
        assert "2XX" in post["responses"]


def test_a_schema_refuses_what_it_should() -> None:
    """The validation above can fail: a wrong type, or a missing data field."""
    spec = _spec()
    validator = _validator(spec, "claim_held")
    good = webhook_payloads.example("claim_held")
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "type": "claim_expired"})
    assert not validator.is_valid({**good, "data": {**good["data"], "qty": "one"}})
    data = dict(good["data"])
    del data["user"]
    assert not validator.is_valid({**good, "data": data})


async def test_real_deliveries_validate_against_the_served_document(
        rig: Rig, receiver: Receiver, worker: None) -> None:  # noqa: F811
    created = await rig.create(receiver.url)
    receiver.secrets.append(created["secret"])
    engine = rig.engine
    await engine.define_campaign("alpha", campaign_spec(stock=3, per_user=None))
    held = [await engine.claim("alpha", f"u{n}", "tee", 1) for n in range(3)]
    ids = [h.claim.claim_id for h in held if h.claim is not None]
    assert len(ids) == 3
    assert (await engine.confirm(ids[0], "u0")).outcome.name == "OK"
    assert (await engine.cancel(ids[1], "u1")).outcome.name == "OK"
    await engine.adjust_stock("alpha", "tee", 2, "operator")
    await _until(lambda: len(set(receiver.ids())) >= 7, 20, "every event delivered")
    resp = await rig.admin.get("/openapi.json")
    spec = await resp.json()
    seen = set()
    for _, body in receiver.got:
        _validator(spec, body["type"]).validate(body)
        msgspec.convert(body, webhook_payloads.PAYLOADS[body["type"]])
        seen.add(body["type"])
    assert seen >= {"campaign_defined", "claim_held", "claim_confirmed", "claim_cancelled",
                    "stock_adjusted"}, seen
