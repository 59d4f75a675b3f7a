"""The fast HS256 path accepts only what PyJWT accepts, token by token.

Every token below is judged by both: the fast path may defer (None) on
anything, but when it accepts, PyJWT (with the gateway's options) accepts the
same token with the same claims. Plain, current tokens must take the fast path.
"""

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from stampede.api.auth import Authenticator
from stampede.api.hs256 import Hs256, b64url_canonical

SECRET = "hs256-test-secret-0123456789-0123456789"
OTHER = "another-secret-0123456789-0123456789-xx"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw(header: Any, payload: Any, secret: str = SECRET, *, header_json: str | None = None,
         payload_json: str | None = None) -> str:
    """A token signed over exactly the JSON text given (for forms PyJWT would not write)."""
    head = _b64((header_json or json.dumps(header)).encode())
    body = _b64((payload_json or json.dumps(payload)).encode())
    sig = hmac.digest(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256)
    return f"{head}.{body}.{_b64(sig)}"


def _pyjwt(token: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"],
                                            options={"require": ["sub"]})
        return claims
    except jwt.PyJWTError:
        return None


def _flip_last(segment: str) -> str:
    """The same bytes spelt differently: stray low bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[i ^ 1]


def _tokens() -> list[tuple[str, str]]:
    now = int(time.time())
    hs = {"alg": "HS256", "typ": "JWT"}
    ok = {"sub": "alice", "iat": now, "exp": now + 600}
    plain = jwt.encode(ok, SECRET, algorithm="HS256")
    head, body, sig = plain.split(".")
    cases: list[tuple[str, str]] = [
        ("plain", plain),
        ("no typ", _raw({"alg": "HS256"}, ok)),
        ("no exp", jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")),
        ("float exp", _raw(hs, {"sub": "a", "exp": now + 600.5})),
        ("extra claims", jwt.encode({**ok, "tiers": ["vip"], "idh": "x", "channel": "web",
                                     "created_at": now - 10, "iss": "me", "jti": "j1",
                                     "aud": ""}, SECRET, algorithm="HS256")),
        ("spaced header", _raw(None, ok, header_json='{ "typ" : "JWT", "alg" : "HS256" }')),
        # Everything below must not be accepted by the fast path unless PyJWT accepts it.
        ("wrong secret", jwt.encode(ok, OTHER, algorithm="HS256")),
        ("tampered payload", f"{head}.{_b64(json.dumps({**ok, 'sub': 'mallory'}).encode())}"
                             f".{sig}"),
        ("tampered signature", f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"),
        ("padded signature", f"{plain}="),
        ("non-canonical signature", f"{head}.{body}.{_flip_last(sig)}"),
        ("non-canonical payload", f"{head}.{_flip_last(body)}.{sig}"),
        ("alg none", _b64(b'{"alg":"none"}') + f".{body}."),
        ("alg HS384", _raw({"alg": "HS384", "typ": "JWT"}, ok)),
        ("alg hs256 lowercase", _raw({"alg": "hs256", "typ": "JWT"}, ok)),
        ("typ other", _raw({"alg": "HS256", "typ": "at+jwt"}, ok)),
        ("kid", _raw({"alg": "HS256", "kid": 5}, ok)),
        ("kid string", _raw({"alg": "HS256", "kid": "k1"}, ok)),
        ("crit", _raw({"alg": "HS256", "crit": ["exp"]}, ok)),
        ("b64 false", _raw({"alg": "HS256", "b64": False, "crit": ["b64"]}, ok)),
        ("header list", _raw(["HS256"], ok)),
        ("expired", jwt.encode({**ok, "exp": now - 1}, SECRET, algorithm="HS256")),
        ("expires now", jwt.encode({**ok, "exp": now}, SECRET, algorithm="HS256")),
        ("nbf future", jwt.encode({**ok, "nbf": now + 60}, SECRET, algorithm="HS256")),
        ("nbf past", jwt.encode({**ok, "nbf": now - 60}, SECRET, algorithm="HS256")),
        ("iat future", jwt.encode({**ok, "iat": now + 60}, SECRET, algorithm="HS256")),
        ("iat string", _raw(hs, {**ok, "iat": str(now)})),
        ("exp string", _raw(hs, {**ok, "exp": str(now + 600)})),
        ("exp bool", _raw(hs, {**ok, "exp": True})),
        ("exp null", _raw(hs, {**ok, "exp": None})),
        ("exp NaN", _raw(hs, None, payload_json='{"sub": "a", "exp": NaN}')),
        ("exp huge", _raw(hs, None, payload_json='{"sub": "a", "exp": 1' + "0" * 40 + "}")),
        ("exp huge float", _raw(hs, None, payload_json='{"sub": "a", "exp": 1e400}')),
        ("aud", jwt.encode({**ok, "aud": "shop"}, SECRET, algorithm="HS256")),
        ("aud list", jwt.encode({**ok, "aud": ["shop"]}, SECRET, algorithm="HS256")),
        ("no sub", jwt.encode({"exp": now + 600}, SECRET, algorithm="HS256")),
        ("sub null", _raw(hs, {**ok, "sub": None})),
        ("sub int", _raw(hs, {**ok, "sub": 5})),
        ("jti int", _raw(hs, {**ok, "jti": 5})),
        ("payload list", _raw(hs, None, payload_json='["sub"]')),
        ("payload not json", _raw(hs, None, payload_json="sub=alice")),
        ("payload BOM", _raw(hs, None, payload_json='\ufeff{"sub": "alice"}')),
        ("duplicate sub", _raw(hs, None, payload_json='{"sub": "bob", "sub": "alice"}')),
        ("two dots", plain.replace(".", "..", 1)),
        ("four segments", f"{plain}.x"),
        ("two segments", f"{head}.{body}"),
        ("empty", ""),
        ("non-ascii", plain + "é"),
    ]
    return cases


TOKENS = _tokens()
MUST_BE_FAST = {"plain", "no typ", "no exp", "float exp", "extra claims", "spaced header",
                "nbf past"}


@pytest.mark.parametrize(("name", "token"), TOKENS, ids=[n for n, _ in TOKENS])
def test_fast_path_accepts_only_what_pyjwt_accepts(name: str, token: str) -> None:
    fast = Hs256(SECRET).claims(token)
    slow = _pyjwt(token)
    if fast is not None:
        assert slow == fast, f"{name}: the fast path accepted what PyJWT does not"
    if name in MUST_BE_FAST:
        assert fast is not None and slow is not None, f"{name}: a plain token went slow"


def test_random_tampering_never_accepted() -> None:
    """Every single-character change of a good token: the fast path never takes one
    PyJWT refuses (and takes none at all: any change breaks the signature)."""
    good = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, SECRET,
                      algorithm="HS256")
    verifier = Hs256(SECRET)
    alphabet = "Aa0-_.=Zz9"
    for i in range(len(good)):
        for ch in alphabet:
            if ch == good[i]:
                continue
            token = good[:i] + ch + good[i + 1:]
            fast = verifier.claims(token)
            if fast is not None:
                assert _pyjwt(token) == fast


def test_canonical_base64url() -> None:
    assert b64url_canonical("YQ") == b"a"
    assert b64url_canonical("YR") is None  # the same byte, stray bits
    assert b64url_canonical("YQ==") is None  # padding is PyJWT's to judge
    assert b64url_canonical("Y") is None
    assert b64url_canonical("Y+Q") is None  # not the url alphabet
    assert b64url_canonical("Y/Q") is None
    assert b64url_canonical("YQ=A") is None  # no padding inside either
    assert b64url_canonical("YQ\n") is None
    assert b64url_canonical("-_8") == b"\xfb\xff"
    assert b64url_canonical("-_9") is None  # stray bits after a two-byte group


def test_authenticator_uses_the_fast_path_and_falls_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain token never reaches PyJWT; one the fast path defers on still does, and
    PyJWT's verdict (accept a padded signature, refuse an audience) stands."""
    import stampede.api.auth as auth

    calls: list[str] = []
    real = auth._JWT.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(auth._JWT, "decode", counting)
    authn = Authenticator(SECRET, False, ())
    plain = auth.mint_user_token(SECRET, "alice")
    assert authn._verify_signature(plain)[0] == "alice"  # type: ignore[attr-defined]
    assert calls == []
    padded = plain + "="
    assert authn._verify_signature(padded)[0] == "alice"  # type: ignore[attr-defined]
    assert calls == [padded]
    aud = jwt.encode({"sub": "alice", "aud": "x"}, SECRET, algorithm="HS256")
    with pytest.raises(jwt.InvalidAudienceError):
        authn._verify_signature(aud)  # type: ignore[attr-defined]


def test_a_secret_pyjwt_refuses_as_a_key_still_refuses_every_token() -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"
    authn = Authenticator(pem, False, ())
    with pytest.raises(jwt.PyJWTError):
        authn._verify_signature(_raw({"alg": "HS256"}, {"sub": "a"}, pem))  # type: ignore
