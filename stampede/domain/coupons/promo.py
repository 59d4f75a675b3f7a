"""Codes users type: public promo codes and members' referral codes.

A promo code is declared with the drop (`CouponDropSpec.promo_codes`) and
issues one SKU, each user limited per code; a referral code is minted per
member (coupon_referral_code.lua). Both are claimed the same way: the claim
names the code instead of a SKU, and coupon_claim.lua resolves it after the
campaign's gates, with every limit of the drop still in force. What is here
is the engine's part: the shape of a code, the referrer a code names (its
wallet key must be passed to the script), and the claim's code argument.
"""

import re
from typing import cast

from redis.asyncio import Redis

from stampede.state import keys
from stampede.state.records import CodeArg

_CODE = re.compile(r"^[A-Z0-9]{3,32}$")
_REFERRAL = re.compile(r"^R[2-9A-HJ-NP-Z]{8}$")
"""The shape of a minted referral code (coupon_referral_code.lua): 'R' and 8 characters
of the coupon code alphabet. Only such codes are looked up before the claim."""


def well_formed(code: str) -> bool:
    """Could this (normalized) text be a promo or referral code at all?"""
    return bool(_CODE.match(code))


async def referrer_of(redis: "Redis", cid: str, code: str) -> str:
    """The member whose referral code this is, '' if none (a promo code or a wrong one).

    Read before the script only to name the referrer's wallet key (and only for
    codes of a referral code's shape: promo-code claims pay no extra round trip);
    the script reads the code again and refuses if it names someone else."""
    if not _REFERRAL.match(code):
        return ""
    owner = cast(str | None, await redis.hget(keys.coupon_keys(cid).drop.cusers, "rc|" + code))
    return "" if owner is None else owner.partition("|")[0]


def code_arg(cid: str, user: str, code: str, referrer: str, ks: list[str]) -> CodeArg:
    """The claim's code argument; appends the keys it names to `ks` (the script's KEYS)."""
    wallet = 0
    if referrer:
        ks.append(keys.wallet_key(cid, referrer))
        wallet = len(ks)
    ks.append(keys.limiter_key(cid, "code", user))
    return CodeArg(code=code, referrer=referrer, referrer_wallet=wallet, limiter=len(ks))
