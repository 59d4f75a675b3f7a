"""Who is calling: a user (JWT or, in dev mode, X-User-Id) or an admin role.

The router (`stampede.api.routing`) asks this module once per request, as the
route declares; handlers receive the answer and never call it themselves.
"""

import hmac
import re
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import jwt
import msgspec
from aiohttp import web
from jwt.algorithms import HMACAlgorithm

from stampede.api.channel_keys import ChannelKey
from stampede.api.errors import ApiError
from stampede.api.headers import header
from stampede.api.hs256 import Hs256
from stampede.api.memo import Memo
from stampede.domain import phases
from stampede.errors import ConfigError, ValidationError
from stampede.state import keys


class _PreparedHmac(HMACAlgorithm):
    """HS256 whose key is prepared once per secret, not once per token.

    PyJWT prepares the key on every decode (PEM and JWK look-alike checks on
    the secret): 8% of a claim's CPU with JWT auth. Our secret does not
    change while we run, so its prepared form is kept; PyJWT still does all
    the rest (signature, header, claims).
    """

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            if len(self._prepared) >= 8:  # a handful of secrets at most; never grow
                self._prepared.clear()
            prepared = self._prepared[key] = super().prepare_key(key)
        return prepared


def _make_jwt() -> jwt.PyJWT:
    verifier = jwt.PyJWT()
    # register_algorithm is PyJWS's extension point; PyJWT has no public handle on its PyJWS.
    verifier._jws.unregister_algorithm("HS256")
    verifier._jws.register_algorithm("HS256", _PreparedHmac())
    return verifier


_JWT = _make_jwt()


class Role(str, Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class AdminToken:
    role: Role
    token: str
    name: str


def parse_admin_tokens(spec: str) -> list[AdminToken]:
    """`role:token,...` (STAMPEDE_ADMIN_TOKENS) into tokens; refuses bad roles."""
    tokens = []
    for i, item in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        role, sep, token = item.partition(":")
        if not sep or not token or role not in (r.value for r in Role):
            raise ConfigError("STAMPEDE_ADMIN_TOKENS must be role:token,... "
                              "with roles operator or viewer")
        tokens.append(AdminToken(Role(role), token, f"{role}-{i}"))
    return tokens


class User(msgspec.Struct, frozen=True):
    """An authenticated public caller, as the route's handler receives it. (One per
    request: a frozen Struct is built in a tenth of the time a frozen dataclass takes.)"""
    id: str
    account_age_s: int = -1
    """Seconds since the account was made (token claim `created_at`), -1 if unknown."""
    identity: str | None = None
    """The hashed real-person identity (token claim `idh`), if the token carries one."""
    tiers: tuple[str, ...] = ()
    """Presales: the audience tiers the credential carries (token claim `tiers`)."""
    channel: str | None = None
    """Presales: the sales channel the credential was issued for (token claim `channel`)."""


_Verified = tuple[str, float | None, int, str | None, tuple[str, ...], str | None]
"""What a token's verified claims say, kept per token (see `Authenticator`): sub, exp,
created_s (account creation, -1 if unknown), identity, tiers, channel. A plain tuple of
atoms, which the garbage collector stops walking (stampede.api.memo)."""


_BEARER = re.compile(r"[\x21-\x7e]+")
"""A token is visible ASCII; anything else (non-UTF-8 bytes included) is refused."""


def bearer(request: web.Request) -> str | None:
    """The bearer token of the Authorization header, None if there is none; 401 if garbled.

    Bytes that are not text are refused by `header()`; a token is visible ASCII
    (RFC 6750), so any other text is refused here, before it reaches an encoder.
    """
    scheme, _, value = (header(request, "Authorization") or "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    if not _BEARER.fullmatch(value):
        raise ApiError.of("invalid_token", detail="a bearer token is visible ASCII characters")
    return value


@dataclass(frozen=True)
class Authenticator:
    jwt_secret: str | None
    dev_auth: bool
    admin_tokens: tuple[AdminToken, ...]
    token_cache_size: int = 65_536
    channel_keys: tuple[ChannelKey, ...] = ()
    """Presales: STAMPEDE_CHANNEL_KEYS (stampede.api.channel_keys)."""

    def __post_init__(self) -> None:
        # A client sends the same token with every request: verify its
        # signature once, then only check its expiry on each use.
        object.__setattr__(self, "_verified", Memo(self._verify_signature,
                                                   self.token_cache_size))
        object.__setattr__(self, "_fast", _fast_path(self.jwt_secret))

    def _verify_signature(self, token: str) -> _Verified:
        """The one JWT decode of a token: every claim any route needs is read here.

        A plain token is accepted by the fast path (~4 µs); whatever it does not
        accept goes to PyJWT (~26 µs), whose verdict stands (stampede.api.hs256)."""
        assert self.jwt_secret is not None
        fast: Hs256 | None = self._fast  # type: ignore[attr-defined]
        claims = fast.claims(token) if fast is not None else None
        if claims is None:
            claims = _JWT.decode(token, self.jwt_secret, algorithms=["HS256"],
                                 options={"require": ["sub"]})
        sub = claims.get("sub")
        if not isinstance(sub, str) or not keys.valid_user_id(sub):
            raise jwt.exceptions.InvalidSubjectError("token subject is not a valid user id")
        exp = claims.get("exp")
        created = claims.get("created_at")  # account creation (epoch s): a risk signal
        created_s = int(created) if isinstance(created, int | float) else -1
        idh = claims.get("idh")
        channel = claims.get("channel")
        return (sub, float(exp) if exp is not None else None, created_s,
                idh if isinstance(idh, str) else None, _token_tiers(claims),
                channel if isinstance(channel, str) else None)

    def user(self, request: web.Request) -> User:
        """The public caller (JWT, or X-User-Id in dev auth), or 401."""
        if self.dev_auth and "X-User-Id" in request.headers:
            return _dev_user(request)
        token = bearer(request)
        if token is None:
            raise ApiError.of("missing_token")
        if self.jwt_secret is None:
            raise ApiError.of("invalid_token", detail="this server takes no user tokens")
        try:
            verified: _Verified = self._verified(token)  # type: ignore[attr-defined]
        except jwt.PyJWTError as exc:
            raise ApiError.of("invalid_token", detail=str(exc)) from exc
        sub, exp, created_s, identity, tiers, channel = verified
        now = time.time()
        if exp is not None and exp <= now:
            raise ApiError.of("invalid_token", detail="Signature has expired")
        return User(sub, _age(created_s, now), identity, tiers, channel)

    def admin(self, request: web.Request, needs: Role) -> AdminToken:
        """The admin token of the call if its role allows `needs`, else 401/403."""
        token = bearer(request)
        found = None
        for candidate in self.admin_tokens:
            # Compare against every token so timing says nothing of which matched.
            if hmac.compare_digest(candidate.token.encode(), (token or "").encode()):
                found = candidate
        if token is None:
            raise ApiError.of("missing_admin_token")
        if found is None:
            raise ApiError.of("invalid_admin_token")
        if needs is Role.OPERATOR and found.role is not Role.OPERATOR:
            raise ApiError.of("read_only_token")
        return found


def _fast_path(secret: str | None) -> Hs256 | None:
    """The fast HS256 verifier of this secret; None (PyJWT alone) if there is no secret,
    or one PyJWT would refuse as a key: PyJWT then says so on each token, as before."""
    if secret is None:
        return None
    try:
        return Hs256(secret)
    except jwt.PyJWTError:
        return None


def _dev_user(request: web.Request) -> User:
    """STAMPEDE_DEV_AUTH: X-User-Id, with X-Account-Created, X-Identity-Hash and
    X-User-Tiers (comma-separated, the token claim `tiers`)."""
    user = header(request, "X-User-Id") or ""
    if not keys.valid_user_id(user):
        raise ApiError.of("invalid", detail="X-User-Id is not a valid user id")
    raw = header(request, "X-Account-Created") or ""
    created = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 16 else -1
    listed = header(request, "X-User-Tiers") or ""
    try:
        tiers = phases.check_tiers([t.strip() for t in listed.split(",")] if listed else [])
    except ValidationError as exc:
        raise ApiError.of("invalid", detail=f"X-User-Tiers: {exc}") from exc
    return User(user, _age(created, time.time()), header(request, "X-Identity-Hash"), tiers,
                header(request, "X-Channel"))


def _token_tiers(claims: dict[str, Any]) -> tuple[str, ...]:
    """The token claim `tiers` (a list of tier names); a malformed one voids the token."""
    if "tiers" not in claims:
        return ()
    raw = claims["tiers"]
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise jwt.exceptions.InvalidTokenError("claim 'tiers' must be a list of tier names")
    try:
        return phases.check_tiers(raw)
    except ValidationError as exc:
        raise jwt.exceptions.InvalidTokenError(f"claim {exc}") from exc


def _age(created_s: int, now: float) -> int:
    return max(0, int(now) - created_s) if created_s >= 0 else -1


def mint_user_token(secret: str, user: str, ttl_s: int = 3600,
                    created_at: int | None = None, idh: str | None = None,
                    tiers: list[str] | None = None, channel: str | None = None) -> str:
    """An HS256 token for `user`, as an operator's login service would issue: `created_at`
    (account creation, epoch s) and `idh` (hashed real-person identity) are optional."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "iat": now, "exp": now + ttl_s}
    if created_at is not None:
        claims["created_at"] = created_at
    if idh is not None:
        claims["idh"] = idh
    if tiers is not None:
        claims["tiers"] = tiers
    if channel is not None:
        claims["channel"] = channel
    return jwt.encode(claims, secret, algorithm="HS256")
