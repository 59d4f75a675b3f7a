"""Proof-of-work challenges: cheap for one person, expensive for a bot farm.

A challenge is signed by the service (HMAC-SHA256 over nonce, user,
campaign, difficulty, expiry), so the service keeps no state until a
solution comes back. The client finds a counter such that

    sha256(f"{challenge}:{counter}") has `difficulty` leading zero bits

(hashcash). Difficulty is in bits: each one doubles the expected work.
Single use is enforced by the caller (a SET NX of the nonce until expiry).
"""

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

import msgspec


class _Payload(msgspec.Struct, array_like=True):
    nonce: str
    user: str
    campaign: str
    difficulty: int
    expires_ms: int


@dataclass(frozen=True)
class Challenge:
    token: str
    nonce: str
    difficulty: int
    expires_ms: int


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_Payload)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, user: str, campaign: str, difficulty: int, now_ms: int,
          ttl_ms: int = 120_000) -> Challenge:
    payload = _Payload(os.urandom(12).hex(), user, campaign, difficulty, now_ms + ttl_ms)
    body = _b64(_enc.encode(payload))
    sig = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return Challenge(f"{body}.{sig}", payload.nonce, difficulty, payload.expires_ms)


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def solve(token: str, difficulty: int, limit: int = 1 << 28) -> str:
    """Find a solution (what a load test or a Python client does)."""
    prefix = f"{token}:".encode()
    for counter in range(limit):
        digest = hashlib.sha256(prefix + str(counter).encode()).digest()
        if leading_zero_bits(digest) >= difficulty:
            return str(counter)
    raise ValueError("no solution within limit")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    nonce: str = ""
    expires_ms: int = 0
    difficulty: int = 0


def verify(keys: dict[str, bytes] | bytes, token: str, solution: str, user: str,
           campaign: str, now_ms: int) -> Verdict:
    """Check signature, binding, expiry and work. Single use is the caller's."""
    candidates = keys.values() if isinstance(keys, dict) else [keys]
    body, _, sig = token.partition(".")
    try:
        given = _unb64(sig)
        payload = _dec.decode(_unb64(body))
    except (ValueError, msgspec.DecodeError):
        return Verdict(False, "malformed")
    if not any(hmac.compare_digest(hmac.new(k, body.encode(), hashlib.sha256).digest(), given)
               for k in candidates):
        return Verdict(False, "forged")
    if payload.user != user or payload.campaign != campaign:
        return Verdict(False, "not yours")
    if now_ms >= payload.expires_ms:
        return Verdict(False, "expired")
    if len(solution) > 20 or not solution.isdigit():
        return Verdict(False, "malformed")
    digest = hashlib.sha256(f"{token}:{solution}".encode()).digest()
    if leading_zero_bits(digest) < payload.difficulty:
        return Verdict(False, "insufficient work")
    return Verdict(True, "ok", payload.nonce, payload.expires_ms, payload.difficulty)
