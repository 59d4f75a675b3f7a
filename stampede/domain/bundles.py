"""Presales: bundles and add-ons, claims that take several SKUs at once, all or nothing
(lua/claim_bundle.lua; confirm, cancel and expiry act on every line: include/bundles.lua).
PATCH campaign adds, replaces and removes the spec's bundles live (patch_campaign.lua,
"bd:<name>" pairs): the next claim reads them; a hold keeps its lines and prices, which
are claims of their own.

A bundle claim is one claim id for the buyer and one ordinary claim per line inside
it (each with its SKU, units and locked price), so stock, limits, stats, tickets,
refunds and the store keep counting per SKU as they always did.

Meta field (define_campaign writes it with the other optional meta, always, so that
a redefinition drops removed bundles):
  bd     the spec's bundles, ';'-joined "name=sku:qty,sku:qty" ('' none)
Users hash marks (the lines find their bundle, the bundle its lines):
  "~b|<bundle claim>"  "<name>|<line id>,<line id>,..." (name '' for a claim of lines)
  "~l|<line claim>"    the bundle claim's id
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from msgspec import UNSET

from stampede.domain.batcher import PendingClaim
from stampede.domain.models import (
    BUNDLE_MAX_LINES,
    BundleLine,
    BundleSpec,
    CampaignPatch,
    CampaignSpec,
)
from stampede.errors import ValidationError
from stampede.outcomes import REFUSALS

META_FIELD = "bd"


@dataclass(slots=True)
class PendingBundle(PendingClaim):
    """A bundle claim waiting for its batch: the claim's context (its sku '', qty the
    units of every line) and what it takes. Not frozen, as PendingClaim."""
    name: str = ""
    """The spec's bundle; '' for a claim of `lines`."""
    lines: tuple[tuple[str, int], ...] = ()
    """(sku, qty) of a claim of lines; () for a spec bundle (the script reads it)."""

    @property
    def fingerprint(self) -> str:
        """The request, for an Idempotency-Key used again with another one."""
        if self.name:
            return f"bundle:{self.name}"
        return "lines:" + ",".join(f"{sku}:{qty}" for sku, qty in self.lines)


def check_lines(lines: Sequence[BundleLine], at: str,
                skus: frozenset[str] | None = None) -> None:
    """ValidationError naming the field: 1 to BUNDLE_MAX_LINES lines, each SKU once
    (and, given the campaign's `skus`, each one of them)."""
    if not 1 <= len(lines) <= BUNDLE_MAX_LINES:
        raise ValidationError(f"{at}: a bundle has 1 to {BUNDLE_MAX_LINES} lines; "
                              f"this one has {len(lines)}")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.sku in seen:
            raise ValidationError(f"{at}[{i}].sku: SKU {line.sku!r} is listed twice "
                                  "(one line per SKU, with its qty)")
        seen.add(line.sku)
        if skus is not None and line.sku not in skus:
            raise ValidationError(f"{at}[{i}].sku: the campaign has no SKU {line.sku!r}")


def check(spec: CampaignSpec) -> None:
    """The spec's bundles: of a sale, each naming its own SKUs once."""
    if not spec.bundles:
        return
    if spec.coupons is not None:
        raise ValidationError("bundles: a coupon drop takes no bundles")
    skus = frozenset(s.sku for s in spec.skus)
    sku_limit = {s.sku: s.per_user for s in spec.skus}
    for name, bundle in spec.bundles.items():
        check_lines(bundle.lines, f"bundles.{name}.lines", skus)
        for i, line in enumerate(bundle.lines):
            if line.qty > spec.limits.max_per_claim:
                raise ValidationError(
                    f"bundles.{name}.lines[{i}].qty: {line.qty} is over the campaign's "
                    f"max_per_claim of {spec.limits.max_per_claim}")
            lim = sku_limit[line.sku]
            if lim is not None and line.qty > lim:
                raise ValidationError(
                    f"bundles.{name}.lines[{i}].qty: {line.qty} is over SKU "
                    f"{line.sku!r}'s per-user limit of {lim}")
        units = sum(line.qty for line in bundle.lines)
        for limit, what in ((spec.limits.per_user, "per_user"),
                            (spec.limits.per_person, "per_person")):
            if limit is not None and units > limit:
                raise ValidationError(f"bundles.{name}: the bundle takes {units} units, "
                                      f"more than the campaign's {what} limit of {limit}")


def encode_lines(lines: Sequence[BundleLine]) -> str:
    return ",".join(f"{line.sku}:{line.qty}" for line in lines)


def meta_fields(spec: CampaignSpec) -> dict[str, str]:
    return {META_FIELD: ";".join(f"{name}={encode_lines(b.lines)}"
                                 for name, b in spec.bundles.items())}


def decode(field: str) -> dict[str, list[BundleLine]]:
    """The bundles of a meta `bd` value, by name, in order."""
    found: dict[str, list[BundleLine]] = {}
    for part in filter(None, field.split(";")):
        name, _, body = part.partition("=")
        found[name] = [BundleLine(sku=sku, qty=int(qty)) for sku, _, qty in
                       (item.rpartition(":") for item in filter(None, body.split(",")))]
    return found


def patch_pairs(edits: Mapping[str, BundleSpec | None]) -> list[str]:
    """The "bd:<name>" pairs of a PATCH's bundles ('' removes one), each checked for its
    shape here; its SKUs and qty against the campaign's by the script."""
    pairs: list[str] = []
    for name, bundle in edits.items():
        if bundle is not None:
            check_lines(bundle.lines, f"bundles.{name}.lines")
        pairs += [f"bd:{name}", "" if bundle is None else encode_lines(bundle.lines)]
    return pairs


def raise_patch_refusal(detail: str, edits: Mapping[str, BundleSpec | None]) -> None:
    """patch_campaign.lua's refusal of the bundles as a ValidationError naming the field
    (any other detail is not the bundles': the caller goes on)."""
    if detail == "bundles_too_many":
        raise ValidationError(REFUSALS[detail].template)
    parts = detail.split(":")
    if len(parts) != 5 or parts[0] != "bundle_line":
        return
    _, name, index, what, max_qty = parts
    bundle = edits.get(name)
    line = bundle.lines[int(index)] if bundle is not None else None
    at = f"bundles.{name}.lines[{index}]"
    if what == "sku":
        raise ValidationError(f"{at}.sku: the campaign has no SKU "
                              f"{line.sku if line else '?'!r}")
    raise ValidationError(f"{at}.qty: {line.qty if line else '?'} is over the campaign's "
                          f"max_per_claim of {max_qty}")


_LIMIT_FIELD = {"max_per_claim": "limits.max_per_claim", "per_user": "limits.per_user"}
_LIMIT_SCOPE = {"max_per_claim": " of SKU '{sku}' in one line, more than the campaign's "
                                 "max_per_claim",
                "sku_per_user": " of SKU '{sku}', more than that SKU's per-user limit",
                "per_user": ", more than the campaign's per-user limit"}


def raise_limit_refusal(detail: str, patch: CampaignPatch) -> None:
    """patch_campaign.lua's 'bundle_limit' refusal (a bundle in force no claim could pass
    under the limits patched) as a ValidationError naming the field the PATCH changed:
    the limit, or else the bundle. Any other detail: the caller goes on."""
    parts = detail.split(":")
    if len(parts) != 6 or parts[0] != "bundle_limit":
        return
    _, name, kind, sku, limit, units = parts
    field = f"bundles.{name}"
    if kind == "sku_per_user":
        if patch.sku_limits is not UNSET and sku in patch.sku_limits:
            field = f"sku_limits.{sku}"
    elif patch.limits is not UNSET and getattr(patch.limits, kind) is not UNSET:
        field = _LIMIT_FIELD[kind]
    raise ValidationError(REFUSALS["bundle_limit"].message({
        "detail": field, "bundle": name, "qty": units, "limit": limit,
        "scope": _LIMIT_SCOPE[kind].format(sku=sku)}))


def line_id(bundle_id: str, n: int) -> str:
    """The claim id of line `n` (1-based) of a bundle claim, as claim_bundle.lua makes it:
    as unguessable as the bundle's own, and a claim id of the same campaign."""
    cid = bundle_id.split(".", 1)[0]
    return f"{cid}." + hashlib.sha1(f"{bundle_id}#{n}".encode()).hexdigest()[:20]
