"""Who is calling: a user (JWT or, in dev mode, X-User-Id) or an admin role."""

import functools
import hmac
import time
from dataclasses import dataclass
from enum import Enum

import jwt
from aiohttp import web
from jwt.algorithms import HMACAlgorithm

from stampede.api.errors import ApiError
from stampede.api.headers import header
from stampede.errors import ConfigError
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


@dataclass(frozen=True)
class Authenticator:
    jwt_secret: str | None
    dev_auth: bool
    admin_tokens: tuple[AdminToken, ...]
    token_cache_size: int = 65_536

    def __post_init__(self) -> None:
        # A client sends the same token with every request: verify its
        # signature once (26 µs), then only check its expiry on each use.
        verify = functools.lru_cache(maxsize=self.token_cache_size)(self._verify_signature)
        object.__setattr__(self, "_verified", verify)

    def _verify_signature(self, token: str) -> tuple[str, float | None, int]:
        assert self.jwt_secret is not None
        claims = _JWT.decode(token, self.jwt_secret, algorithms=["HS256"],
                             options={"require": ["sub"]})
        sub = claims.get("sub")
        if not isinstance(sub, str) or not keys.valid_user_id(sub):
            raise jwt.exceptions.InvalidSubjectError("token subject is not a valid user id")
        exp = claims.get("exp")
        created = claims.get("created_at")  # account creation (epoch s): a risk signal
        created_s = int(created) if isinstance(created, int | float) else -1
        return sub, float(exp) if exp is not None else None, created_s

    def user(self, request: web.Request) -> str:
        """The user id of a public call, or 401."""
        if self.dev_auth:
            user = header(request, "X-User-Id")
            if user is not None:
                if not keys.valid_user_id(user):
                    raise ApiError(400, "invalid_request", "X-User-Id is not a valid user id")
                return user
        token = _bearer(request)
        if token is None or self.jwt_secret is None:
            raise ApiError(401, "unauthorized", "a bearer token is required")
        try:
            sub, exp, _created = self._verified(token)  # type: ignore[attr-defined]
        except jwt.PyJWTError as exc:
            raise ApiError(401, "unauthorized", f"invalid token: {exc}") from exc
        if exp is not None and exp <= time.time():
            raise ApiError(401, "unauthorized", "invalid token: Signature has expired")
        return sub  # type: ignore[no-any-return]

    def account_age_s(self, request: web.Request) -> int:
        """Seconds since the account was made (token claim `created_at`; in dev auth
        the X-Account-Created header), or -1 if unknown. Call after `user()`."""
        created = -1
        if self.dev_auth and "X-User-Id" in request.headers:
            raw = header(request, "X-Account-Created") or ""
            created = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 16 else -1
        else:
            token = _bearer(request)
            if token is not None and self.jwt_secret is not None:
                created = self._verified(token)[2]  # type: ignore[attr-defined]
        return max(0, int(time.time()) - created) if created >= 0 else -1

    def admin(self, request: web.Request, needs: Role) -> AdminToken:
        """The admin token of the call if its role allows `needs`, else 401/403."""
        token = _bearer(request)
        found = None
        for candidate in self.admin_tokens:
            # Compare against every token so timing says nothing of which matched.
            if hmac.compare_digest(candidate.token.encode(), (token or "").encode()):
                found = candidate
        if token is None or found is None:
            raise ApiError(401, "unauthorized", "an admin bearer token is required")
        if needs is Role.OPERATOR and found.role is not Role.OPERATOR:
            raise ApiError(403, "forbidden", "this token may only read")
        return found


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = (header(request, "Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def mint_user_token(secret: str, user: str, ttl_s: int = 3600,
                    created_at: int | None = None) -> str:
    """An HS256 token for `user`, as an operator's login service would issue."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "iat": now, "exp": now + ttl_s}
    if created_at is not None:
        claims["created_at"] = created_at
    return jwt.encode(claims, secret, algorithm="HS256")
