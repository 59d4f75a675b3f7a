"""Presale access phases: checked here, compiled into one meta field for the claim script.

A phase opens at its time to the users whose credential carries one of its
tiers or who are members of one of its segments (ops upload those: see
segments.py), or to everyone, the public sale, when it names neither; it
stays open until the campaign closes. A user's opening is the earliest phase they belong
to; include/phases.lua decides it inside the claim script.

Meta field `ph` (empty: no phases) holds the phases in order of opening,
`name@opens_ms=tier,tier/segment,segment;...`, with `*` for everyone: names,
tiers and segments are `[A-Za-z0-9_-]`, so the separators never occur inside
them.
"""

import re
from collections.abc import Sequence

from stampede.domain.models import PhasePublic, PhaseSpec, from_ms, to_ms
from stampede.errors import ValidationError

META_FIELD = "ph"
EVERYONE = "*"
MAX_TIERS_PER_CLAIM = 32
_TIER = re.compile(r"[A-Za-z0-9_-]{1,32}")


def check(phases: Sequence[PhaseSpec], opens_ms: int | None = None,
          closes_ms: int | None = None) -> None:
    """ValidationError naming the field at fault, unless the phases are in order of
    opening, no tier is in two phases, only the last is for everyone, and (when the
    schedule is given) each opens within it."""
    names: set[str] = set()
    owner: dict[str, str] = {}
    segment_owner: dict[str, str] = {}
    previous: int | None = None
    for i, p in enumerate(phases):
        at = to_ms(p.opens_at)
        if p.name in names:
            raise ValidationError(f"phases[{i}].name: phase {p.name!r} appears twice")
        names.add(p.name)
        if previous is not None and at <= previous:
            raise ValidationError(f"phases[{i}].opens_at must be after phases[{i - 1}].opens_at "
                                  "(phases are listed in order of opening)")
        previous = at
        if opens_ms is not None and closes_ms is not None and not opens_ms <= at < closes_ms:
            raise ValidationError(f"phases[{i}].opens_at must be at or after opens_at and "
                                  "before closes_at")
        if p.tiers is None and p.segments is None:
            if i != len(phases) - 1:
                raise ValidationError(f"phases[{i}].tiers: only the last phase may be open to "
                                      "everyone (no tiers or segments); later phases would "
                                      "overlap it")
            continue
        for segment in p.segments or ():
            if segment in segment_owner:
                raise ValidationError(f"phases[{i}].segments: segment {segment!r} is already in "
                                      f"phase {segment_owner[segment]!r} (phases may not "
                                      "overlap)")
            segment_owner[segment] = p.name
        for tier in p.tiers or ():
            if tier in owner:
                raise ValidationError(f"phases[{i}].tiers: tier {tier!r} is already in phase "
                                      f"{owner[tier]!r} (phases may not overlap)")
            owner[tier] = p.name


def encode(phases: Sequence[PhaseSpec]) -> str:
    """The meta field `ph` of checked phases ('' for none)."""
    return ";".join(f"{p.name}@{to_ms(p.opens_at)}={_audience(p)}" for p in phases)


def _audience(p: PhaseSpec) -> str:
    if p.tiers is None and p.segments is None:
        return EVERYONE
    return f"{','.join(p.tiers or ())}/{','.join(p.segments or ())}"


def decode(raw: str) -> list[PhasePublic]:
    """The phases in force, from meta field `ph`."""
    out = []
    for part in filter(None, raw.split(";")):
        head, _, audience = part.partition("=")
        name, _, at = head.partition("@")
        tiers, _, segments = ("" if audience == EVERYONE else audience).partition("/")
        out.append(PhasePublic(name=name, opens_at=from_ms(int(at)),
                               tiers=tiers.split(",") if tiers else None,
                               segments=segments.split(",") if segments else None))
    return out


def check_tiers(tiers: Sequence[str]) -> tuple[str, ...]:
    """A claimant's tiers as the claim script takes them; ValidationError if malformed."""
    if len(tiers) > MAX_TIERS_PER_CLAIM:
        raise ValidationError(f"tiers: at most {MAX_TIERS_PER_CLAIM} per user; "
                              f"this credential carries {len(tiers)}")
    for t in tiers:
        if not (isinstance(t, str) and _TIER.fullmatch(t)):
            raise ValidationError(f"tiers: {t!r} is not a tier name ([A-Za-z0-9_-]{{1,32}})")
    return tuple(tiers)
