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

import base64
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
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_decode_json = msgspec.json.Decoder().decode


def b64url_canonical(segment: str) -> bytes | None:
    """The bytes of an unpadded base64url segment in its one canonical spelling, else None.

    PyJWT refuses non-canonical spellings (stray bits in the last character),
    so the fast path must not take them either."""
    raw = segment.encode("ascii")
    if len(raw) % 4 == 1 or not _B64URL.issuperset(raw):
        return None
    try:
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except binascii.Error:
        return None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != raw:
        return None
    return data


class Hs256:
    """Verifies HS256 tokens signed with one secret; see the module's docstring."""

    def __init__(self, secret: str | bytes) -> None:
        # PyJWT's own key preparation (it refuses PEM- and JWK-looking secrets).
        self._key: bytes = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
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
        expected = base64.urlsafe_b64encode(
            hmac.digest(self._key, signing_input.encode("ascii"), hashlib.sha256)
        ).rstrip(b"=")
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
