"""Coupon codes: random, HMAC-signed with a key id, short, unambiguous.

A coupon is found by its *locator*, 12 characters stored with it: the drop's
number (4) and 8 random characters (40 bits, made in the claim script from
a random seed). What a user or a till sees adds a key id and a signature:

    static code    K DDDD RRRRRRRR SSSSSS    K key id, S = HMAC(key K, locator)
    rotating code  K DDDD RRRRRRRR TTTTTT    T = HMAC(coupon secret, time step)

19 characters from a 32-letter alphabet without 0, 1, I and O. The
signature is 30 bits: a guessed code must also name an existing coupon
(40 random bits). The rotating code is derived from a per-coupon secret
(HMAC of the key and the locator) and the 30-second step, so a screenshot
stops working within a minute; the claim script checks the step against
server time. Keys rotate: codes are signed with the first (active) key and
verified with any listed key, so codes shown before a rotation stay valid
until their key is retired (removed). Comparisons are constant-time.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from stampede.domain.admission import kept_secret
from stampede.errors import ConfigError

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
STEP_MS = 30_000
"""Length of one rotating-code step; the current and the previous step are accepted."""
DROP_CHARS, RANDOM_CHARS, SIG_CHARS = 4, 8, 6
LOCATOR_CHARS = DROP_CHARS + RANDOM_CHARS
CODE_CHARS = 1 + LOCATOR_CHARS + SIG_CHARS
MAX_DROPS = len(ALPHABET) ** DROP_CHARS
_KID = re.compile(r"^[2-9A-HJ-NP-Z]$")
_CODE = re.compile(rf"^[{ALPHABET}]{{{CODE_CHARS}}}$")


def encode(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 32)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def decode(text: str) -> int:
    n = 0
    for c in text:
        n = n * 32 + _INDEX[c]
    return n


def normalize(code: str) -> str:
    """What a person typed, as a code: upper case, no spaces or dashes."""
    return code.upper().replace("-", "").replace(" ", "")


@dataclass(frozen=True)
class Parsed:
    kid: str
    locator: str
    drop: int
    step: int | None
    """The time step of a rotating code; None for the static code."""


class CodeKeys:
    """The signing keys by id; the first is the active one."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        if not keys:
            raise ConfigError("at least one coupon key is needed")
        for kid, secret in keys:
            if not _KID.match(kid) or len(secret) < 16:
                raise ConfigError("STAMPEDE_COUPON_KEYS must be kid:secret,... with kid one "
                                  f"letter of {ALPHABET} and secrets of 16+ characters")
        self._keys = {kid: hashlib.sha256(b"stampede-coupon-v1\n" + s.encode()).digest()
                      for kid, s in keys}
        self.active = keys[0][0]

    @classmethod
    def parse(cls, spec: str) -> "CodeKeys":
        pairs = []
        for item in (p.strip() for p in spec.split(",") if p.strip()):
            kid, sep, secret = item.partition(":")
            if not sep:
                raise ConfigError("STAMPEDE_COUPON_KEYS must be kid:secret,...")
            pairs.append((kid, secret))
        return cls(pairs)

    @classmethod
    def kept(cls, path: Path) -> "CodeKeys":
        """One generated key (id A) kept under the data dir, when none is configured."""
        return cls([("A", kept_secret(path))])

    def _sig(self, key: bytes, message: str) -> str:
        digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
        return encode(int.from_bytes(digest[:4], "big") >> 2, SIG_CHARS)  # 30 bits

    def static(self, locator: str, kid: str | None = None) -> str:
        kid = kid or self.active
        return kid + locator + self._sig(self._keys[kid], "s|" + locator)

    def rotating(self, locator: str, step: int, kid: str | None = None) -> str:
        """The rotating code of `step` under key `kid` (default: the active one)."""
        kid = kid or self.active
        return kid + locator + self._totp(self._keys[kid], locator, step)

    def listed(self, kid: str) -> bool:
        """Whether `kid` is a key still listed (active or kept for verification)."""
        return kid in self._keys

    def _totp(self, key: bytes, locator: str, step: int) -> str:
        secret = hmac.new(key, ("c|" + locator).encode(), hashlib.sha256).digest()
        return self._sig(secret, f"t|{step}")

    def verify(self, code: str, now_ms: int, skew_steps: int = 2) -> Parsed | None:
        """The code's parts if its signature is genuine, else None.

        A rotating code is matched against the steps around `now_ms` (a
        wide net: the script decides by server time which steps still
        count); every candidate is compared, in constant time.
        """
        code = normalize(code)
        if not _CODE.match(code):
            return None
        kid, locator, sig = code[0], code[1:1 + LOCATOR_CHARS], code[1 + LOCATOR_CHARS:]
        key = self._keys.get(kid)
        if key is None:  # unknown or retired key
            return None
        drop = decode(locator[:DROP_CHARS])
        found: Parsed | None = None
        if hmac.compare_digest(sig, self._sig(key, "s|" + locator)):
            found = Parsed(kid, locator, drop, None)
        now_step = now_ms // STEP_MS
        for step in range(now_step - skew_steps, now_step + skew_steps + 1):
            if hmac.compare_digest(sig, self._totp(key, locator, step)) and found is None:
                found = Parsed(kid, locator, drop, step)
        return found


def new_seed() -> str:
    """The random seed a claim script turns into locators and coupon ids."""
    return secrets.token_hex(16)
