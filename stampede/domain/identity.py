"""Presales: the real-person identity a credential carries (the `idh` claim, a hash the
identity provider computes), which a campaign's `per_person` limit counts."""

import re

from stampede.errors import ValidationError

_IDENTITY = re.compile(r"^[A-Za-z0-9_.:=+/-]{1,128}$")

META_FIELD = "per_person"
"""The campaign meta field of the limit (claim_batch.lua reads it; absent: no limit)."""


def check(identity: str) -> str:
    """The identity as the claim script stores it: never '|' (a key separator) or empty."""
    if not _IDENTITY.match(identity):
        raise ValidationError("identity (idh) must be 1 to 128 characters of "
                              "A-Z a-z 0-9 _ . : = + / -")
    return identity
