"""The spec says how a user is known: the token's claims, and in dev auth the
headers that stand in for them (the scalper guard and coupon drops read both)."""

from tests.api.conftest import Api


async def test_the_spec_documents_the_token_claims_and_dev_headers(api: Api) -> None:
    spec = await (await api.public.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert {"created_at", "idh"} <= set(schemes["userToken"]["description"].replace(
        "`", " ").split())
    assert "X-Account-Created" in schemes["devUser"]["description"]
    for path in ("/v1/campaigns/{cid}/claims", "/v1/campaigns/{cid}/coupons"):
        params = {p["name"]: p for p in spec["paths"][path]["post"]["parameters"]}
        assert "account_age_s" in params["X-Account-Created"]["description"]
        assert "per_person" in params["X-Identity-Hash"]["description"]
    # Routes without a user have no user headers.
    assert "parameters" not in spec["paths"]["/readyz"]["get"] or all(
        p["name"] != "X-Identity-Hash" for p in spec["paths"]["/readyz"]["get"]["parameters"])
