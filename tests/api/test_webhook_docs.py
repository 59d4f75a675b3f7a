"""Webhook payloads are documented where endpoints are managed: the admin document."""

from stampede.durable.webhooks import EVENT_TYPES
from tests.api.conftest import Api


async def test_the_admin_document_lists_the_webhooks_and_the_public_one_does_not(
        api: Api) -> None:
    admin = await (await api.admin.get("/openapi.json")).json()
    public = await (await api.public.get("/openapi.json")).json()
    assert set(admin["webhooks"]) == set(EVENT_TYPES)
    assert "webhooks" not in public
    for item in admin["webhooks"].values():  # every reference resolves in the document
        ref = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in admin["components"]["schemas"]
