"""Checking a coupon drop and packing it into the campaign's meta fields.

The claim and redemption scripts read the drop from meta (written by
define_campaign.lua with the rest of the campaign, so a drop and its
campaign can never be apart):

    coupons            "1" for a drop ("0" otherwise: sale claims only)
    cp_no              the drop's code prefix (engine.coupons.codes)
    cp_budget, cp_per_day, cp_user_day, cp_person, cp_mcap   -1 when unset
    cp_sku:<sku>       JSON {"t": [template ids], "v": face value per unit}
    cp_spec:<template> the template's spec as JSON (for the engine's views and pricing)
    cp_tpl:<template>  JSON {"u": uses, "vf", "vt" (ms, -1), "vd" (days, -1),
                             "x": transferable 0|1, "g": gifts count 0|1, "f": face value}
    cp_promo:<CODE>    JSON {"s": sku, "u": claims per user} of a promo code
    cp_ref             JSON {"s": friend's sku, "r": referrer's sku, "m": friends
                       rewarded per referrer, -1 no limit}, when the drop has referrals
    cp_coded:<sku>     "1": the SKU is claimable only with a code (promo or referral)
    cp_badcode         "<interval ms>:<burst>" of the wrong-code limiter
    cp_points:<sku>    the SKU's price in points per unit (points exchange)
    cp_paids           JSON list of the paid vouchers' SKUs (their holds count against the budget)
    cp_paid:<sku>      "1": a paid voucher (claim holds, confirm issues: docs/paid-vouchers.md)
    cp_tz              the drop's IANA time zone (coupon rules: hours and days)
    cp_rev:<template>  the template's revision, bumped by each live change (absent: 0);
                       a coupon notes the one it was issued under (CouponRecord.rev)
    cp_hist:<template> JSON [[until ms, spec JSON], ...]: the revisions a live change
                       replaced, for coupons issued before it (absent: none)
"""


import msgspec

from stampede.domain.coupons import rules
from stampede.domain.coupons.spec import CouponDropSpec, TemplateSpec
from stampede.domain.models import to_ms
from stampede.errors import ValidationError

_json = msgspec.json.Encoder()
_DAY_MS = 86_400_000


def check_template(tid: str, t: TemplateSpec) -> None:
    def bad(why: str) -> ValidationError:
        return ValidationError(f"template {tid!r}: {why}")
    if t.kind == "percent_off" and t.percent is None:
        raise bad("percent_off needs percent")
    if t.kind != "percent_off" and t.percent is not None:
        raise bad("only percent_off takes percent")
    if t.kind == "threshold_off" and t.threshold <= 0:
        raise bad("threshold_off needs a threshold above 0")
    if t.kind in ("exchange", "pack") and t.item is None:
        raise bad(f"{t.kind} needs the item it gives")
    if t.kind != "pack" and t.uses != 1:
        raise bad("only a pack has more than one use")
    fixed = t.valid_from is not None or t.valid_to is not None
    if fixed == (t.valid_days is not None):
        raise bad("validity is either valid_from and valid_to, or valid_days")
    if fixed and (t.valid_from is None or t.valid_to is None
                  or to_ms(t.valid_to) <= to_ms(t.valid_from)):
        raise bad("valid_to must come after valid_from")
    times = rules.check_times(t)
    if times is not None:
        raise bad(times)


def sku_templates(drop: CouponDropSpec, sku: str) -> list[str]:
    if sku in drop.packs:
        return list(drop.packs[sku])
    if sku in drop.templates:
        return [sku]
    raise ValidationError(f"sku {sku!r} is neither a template nor a pack of the drop")


def unit_value(t: TemplateSpec) -> int:
    """Face value one coupon issues against the budget (a pack: every use)."""
    return t.face_value * t.uses


def check_drop(drop: CouponDropSpec, skus: list[str]) -> None:
    """Refuse a drop whose templates, packs or SKUs do not make sense (ValidationError)."""
    rules.zone(drop.time_zone)
    for tid, t in drop.templates.items():
        check_template(tid, t)
    for sku, tids in drop.packs.items():
        for tid in tids:
            if tid not in drop.templates:
                raise ValidationError(f"pack {sku!r} names unknown template {tid!r}")
    for sku in skus:
        sku_templates(drop, sku)
    check_codes(drop, skus)


def check_codes(drop: CouponDropSpec, skus: list[str]) -> None:
    """Promo codes and referral rewards must name SKUs of the campaign."""
    for code, promo in drop.promo_codes.items():
        if promo.sku not in skus:
            raise ValidationError(f"promo code {code!r} names {promo.sku!r}, which is not a "
                                  "SKU of the campaign")
    for sku in drop.points:
        if sku not in skus:
            raise ValidationError(f"points prices {sku!r}, which is not a SKU of the campaign")
        if sku in coded_skus(drop):
            raise ValidationError(f"SKU {sku!r} is priced in points and issued by a code: "
                                  "choose one")
    check_paid(drop, skus)
    if drop.referral is not None:
        for name in ("sku", "referrer_sku"):
            sku = getattr(drop.referral, name)
            if sku not in skus:
                raise ValidationError(f"referral.{name} {sku!r} is not a SKU of the campaign")


def check_paid(drop: CouponDropSpec, skus: list[str]) -> None:
    """Paid vouchers: SKUs of the campaign, sold for money only (no code, no points)."""
    for sku in drop.paid:
        if sku not in skus:
            raise ValidationError(f"paid names {sku!r}, which is not a SKU of the campaign")
        if sku in coded_skus(drop) or sku in drop.points:
            raise ValidationError(f"SKU {sku!r} is a paid voucher and also issued by a code "
                                  "or priced in points: choose one")


def check_paid_prices(drop: CouponDropSpec, prices: dict[str, int]) -> None:
    """A paid voucher has a price: its SKU's `price` must be above 0."""
    for sku in drop.paid:
        if prices.get(sku, 0) <= 0:
            raise ValidationError(f"paid voucher SKU {sku!r} needs a price above 0 "
                                  f"(it has {prices.get(sku, 0)})")


def coded_skus(drop: CouponDropSpec) -> set[str]:
    """SKUs claimable only with a code: those promo codes and referrals issue."""
    coded = {p.sku for p in drop.promo_codes.values()}
    if drop.referral is not None:
        coded |= {drop.referral.sku, drop.referral.referrer_sku}
    return coded


def drop_meta(drop: CouponDropSpec | None, skus: list[str], number: str | None) -> dict[str, str]:
    """The meta fields of a drop (or of a plain campaign: coupons off)."""
    if drop is None:
        return {"coupons": "0"}
    check_drop(drop, skus)

    def unset(v: int | None) -> str:
        return "-1" if v is None else str(v)

    assert number is not None
    meta = {"coupons": "1", "cp_no": number, "cp_budget": unset(drop.budget),
            "cp_per_day": unset(drop.per_day), "cp_user_day": unset(drop.per_user_per_day),
            "cp_person": unset(drop.per_person), "cp_mcap": unset(drop.merchant_daily_cap),
            "cp_tz": drop.time_zone}
    for sku in skus:
        tids = sku_templates(drop, sku)
        value = sum(unit_value(drop.templates[t]) for t in tids)
        meta[f"cp_sku:{sku}"] = _json.encode({"t": tids, "v": value}).decode()
    for tid, t in drop.templates.items():
        meta.update(template_meta(tid, t))
    meta.update(code_meta(drop))
    return meta


def code_meta(drop: CouponDropSpec) -> dict[str, str]:
    """The meta fields of the drop's promo codes, referrals and wrong-code limiter."""
    per_hour = drop.wrong_codes.per_hour
    meta = {"cp_badcode": f"{3_600_000 // per_hour}:{per_hour}"}
    for code, promo in drop.promo_codes.items():
        meta[f"cp_promo:{code}"] = _json.encode({"s": promo.sku, "u": promo.per_user}).decode()
    if drop.referral is not None:
        r = drop.referral
        meta["cp_ref"] = _json.encode({"s": r.sku, "r": r.referrer_sku,
                                       "m": -1 if r.per_referrer is None
                                       else r.per_referrer}).decode()
    for sku in coded_skus(drop):
        meta[f"cp_coded:{sku}"] = "1"
    for sku, price in drop.points.items():
        meta[f"cp_points:{sku}"] = str(price)
    for sku in drop.paid:
        meta[f"cp_paid:{sku}"] = "1"
    if drop.paid:
        meta["cp_paids"] = _json.encode(drop.paid).decode()
    return meta


def template_meta(tid: str, t: TemplateSpec) -> dict[str, str]:
    """The meta fields a template is kept in (cp_tpl for the scripts, cp_spec whole)."""
    return {f"cp_tpl:{tid}": _json.encode({
                "u": t.uses, "f": t.face_value,
                "vf": to_ms(t.valid_from) if t.valid_from is not None else -1,
                "vt": to_ms(t.valid_to) if t.valid_to is not None else -1,
                "vd": t.valid_days if t.valid_days is not None else -1,
                "x": int(t.transferable), "g": int(t.gifts_count_to_limit)}).decode(),
            f"cp_spec:{tid}": _json.encode(t).decode()}


def day_of(ms: int) -> int:
    return ms // _DAY_MS
