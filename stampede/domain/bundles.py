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

from stampede.domain.batcher import PendingClaim
from stampede.domain.models import BUNDLE_MAX_LINES, BundleLine, BundleSpec, CampaignSpec
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
    for name, bundle in spec.bundles.items():
        check_lines(bundle.lines, f"bundles.{name}.lines", skus)
        for i, line in enumerate(bundle.lines):
            if line.qty > spec.limits.max_per_claim:
                raise ValidationError(
                    f"bundles.{name}.lines[{i}].qty: {line.qty} is over the campaign's "
                    f"max_per_claim of {spec.limits.max_per_claim}")


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


def line_id(bundle_id: str, n: int) -> str:
    """The claim id of line `n` (1-based) of a bundle claim, as claim_bundle.lua makes it:
    as unguessable as the bundle's own, and a claim id of the same campaign."""
    cid = bundle_id.split(".", 1)[0]
    return f"{cid}." + hashlib.sha1(f"{bundle_id}#{n}".encode()).hexdigest()[:20]
