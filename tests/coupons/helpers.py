"""Coupon drop specs and merchants for the coupon tests."""

from typing import Any

import msgspec

from stampede import Engine
from stampede.domain.coupons.service import Merchant
from stampede.domain.coupons.spec import MerchantSpec
from stampede.domain.models import CampaignSpec
from tests.conftest import iso

FIVE_OFF = {"kind": "fixed_off", "face_value": 500, "valid_days": 30}


def drop_spec(stock: int = 100, per_user: int | None = None,
              templates: dict[str, dict[str, Any]] | None = None,
              packs: dict[str, list[str]] | None = None, skus: tuple[str, ...] | None = None,
              max_per_claim: int = 10, campaign: dict[str, Any] | None = None,
              **coupons: Any) -> CampaignSpec:
    """An open coupon drop; each SKU (template or pack) gets `stock` units now."""
    templates = templates or {"five": FIVE_OFF}
    packs = packs or {}
    names = skus or tuple(templates) + tuple(packs)
    limits: dict[str, Any] = {"max_per_claim": max_per_claim}
    if per_user is not None:
        limits["per_user"] = per_user
    raw = {"name": "drop", "opens_at": iso(-60), "closes_at": iso(3600), "limits": limits,
           "skus": [{"sku": s, "price": 0, "waves": [{"at": iso(-30), "qty": stock}]}
                    for s in names],
           "coupons": {"templates": templates, "packs": packs, **coupons},
           **(campaign or {})}
    return msgspec.convert(raw, CampaignSpec)


async def merchant(engine: Engine, mid: str = "m1", groups: list[str] | None = None,
                   region: str | None = None) -> Merchant:
    creds = await engine.coupons.put_merchant(mid, MerchantSpec(name=mid, groups=groups or [],
                                                                region=region))
    found = await engine.coupons.merchant(creds.token)
    assert found is not None
    return found
