"""Coupons: templates, drops, codes, wallet, redemption, gifting, expiry.

A coupon drop is a campaign (`CampaignSpec.coupons`) whose SKUs are coupon
templates or gift packs of them. Every change is one Lua operation
(`lua/coupon_*.lua`) that appends its events; what is pure (codes, discount
and stacking maths, template checks) is plain Python here.

    spec.py       the msgspec types of templates, drops, views and requests
    templates.py  checking a drop and packing it into campaign meta
    codes.py      signed coupon codes and rotating till codes (key rotation)
    discount.py   thresholds, stacking, discounts of an order
    service.py    `Coupons`: the engine API over the scripts
"""
