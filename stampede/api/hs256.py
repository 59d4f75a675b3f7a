"""The fast path of HS256 verification: accept a plain token in a few µs, or defer.

PyJWT spends ~26 µs on a token: it decodes and validates the header JSON on
every call, merges option dicts, walks its algorithm registry and checks a
dozen claims through method calls. A user token here is always the same
shape (header `{"alg":"HS256","typ":"JWT"}`, a small JSON payload), so most
of that work can be done once or not at all:

- the header segment's verdict is kept (a handful of distinct headers exist);
- the signature is one `hmac.digest` over the signing input, compared in
  constant time with the token's, *before* the payload is even decoded;
- the payload is decoded by msgspec, and the claims PyJWT would check with
  the gateway's options (sub required, exp, nbf, iat, aud, sub, jti) are
  checked inline.

This path only ever *accepts*: anything it is not sure of (another header,
a signature that does not match, padding, a claim of an unusual type, an
expired or not-yet-valid token) answers None, and the caller hands the token
to PyJWT, whose verdict (and error message) stands. So it accepts a subset of
what PyJWT accepts (tests/api/test_hs256.py checks it against PyJWT token by
token), never more.
"""

import binascii
import hashlib
import hmac
import time
from typing import Any

import msgspec
from jwt.algorithms import HMACAlgorithm

_PLAIN_HEADERS = ({"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"})
"""Headers taken on the fast path: exactly these keys and values (no kid, crit, b64)."""
_MAX_HEADERS = 16
"""Distinct accepted header segments kept (JSON spacing or key order varies by issuer)."""
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_FROM_URL = bytes.maketrans(b"-_+/=", b"+/***")
"""base64url to the standard alphabet, for binascii; `+`, `/` and `=` are not base64url,
so they become a byte its strict mode refuses."""
_TO_URL = bytes.maketrans(b"+/", b"-_")
_PAD = (b"", b"", b"==", b"=")
"""Padding of an unpadded segment, by its length modulo 4 (1 is never a length)."""
_SPARE = (0, 0, 0x0F, 0x03)
"""Bits of the last character a segment's bytes leave unused, by its length modulo 4:
zero in the one canonical spelling."""
_VALUE = bytes(_ALPHABET.find(bytes([c])) & 0xFF for c in range(256))
_decode_json = msgspec.json.Decoder().decode


def b64url_canonical(segment: str) -> bytes | None:
    """The bytes of an unpadded base64url segment in its one canonical spelling, else None.

    PyJWT refuses non-canonical spellings (stray bits in the last character),
    so the fast path must not take them either. binascii's strict mode refuses
    any byte outside the alphabet; the stray bits are checked here."""
    raw = segment.encode("ascii")
    n = len(raw) % 4
    if n == 1:
        return None
    try:
        data = binascii.a2b_base64(raw.translate(_FROM_URL) + _PAD[n], strict_mode=True)
    except binascii.Error:
        return None
    if n and _VALUE[raw[-1]] & _SPARE[n]:
        return None
    return data


class Hs256:
    """Verifies HS256 tokens signed with one secret; see the module's docstring."""

    def __init__(self, secret: str | bytes) -> None:
        # PyJWT's own key preparation (it refuses PEM- and JWK-looking secrets).
        self._key: bytes = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
        # The key's HMAC state, copied for each token: cheaper than setting it up anew.
        self._mac = hmac.new(self._key, digestmod=hashlib.sha256)
        self._headers: set[str] = set()

    def claims(self, token: str) -> dict[str, Any] | None:
        """The token's claims if it is a plain, authentic, current HS256 token; None
        when PyJWT must decide (which it does for every token refused here)."""
        if not token.isascii() or token.count(".") != 2:
            return None
        signing_input, _, signature = token.rpartition(".")
        head, _, body = signing_input.partition(".")
        if head not in self._headers and not self._plain_header(head):
            return None
        mac = self._mac.copy()
        mac.update(signing_input.encode("ascii"))
        # 32 bytes are 43 base64 characters and one '=' of padding.
        expected = binascii.b2a_base64(mac.digest(), newline=False)[:43].translate(_TO_URL)
        if not hmac.compare_digest(expected, signature.encode("ascii")):
            return None
        raw = b64url_canonical(body)
        if raw is None:
            return None
        try:
            payload = _decode_json(raw)
        except msgspec.DecodeError:
            return None
        if not isinstance(payload, dict) or not _current(payload, time.time()):
            return None
        return payload

    def _plain_header(self, head: str) -> bool:
        raw = b64url_canonical(head)
        if raw is None:
            return False
        try:
            header = _decode_json(raw)
        except msgspec.DecodeError:
            return False
        if header not in _PLAIN_HEADERS:
            return False
        if len(self._headers) < _MAX_HEADERS:
            self._headers.add(head)
        return True


def _number(value: object) -> bool:
    """A plain JSON number (PyJWT would also take numeric strings and booleans: those
    are left to it)."""
    return type(value) is int or (type(value) is float and value == value
                                  and abs(value) != float("inf"))


def _current(payload: dict[str, Any], now: float) -> bool:
    """PyJWT's claim checks with the gateway's options (require sub; verify exp, nbf,
    iat, aud with no audience expected, sub and jti types), in the accepting direction
    only: True when PyJWT would accept."""
    sub = payload.get("sub")
    if not isinstance(sub, str):  # required, and a string
        return False
    if "jti" in payload and not isinstance(payload["jti"], str):
        return False
    if payload.get("aud"):  # an audience nobody asked for: PyJWT refuses it
        return False
    for name in ("iat", "nbf", "exp"):
        if name in payload:
            value = payload[name]
            if not _number(value):
                return False
            # PyJWT compares int(value): the whole seconds.
            if name == "exp" and int(value) <= now:
                return False
            if name != "exp" and int(value) > now:
                return False
    return True
