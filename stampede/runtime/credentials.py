"""Credentials the service needs, generated under the data dir when not configured.

With no configuration `stampede serve` still runs safely: it makes a random
JWT secret and an operator token, keeps them (mode 0600) under the data dir,
and prints where they are. Each kind has its prefix (`stpa_` admin token,
`stpj_` JWT secret: `stampede.domain.admission.SECRET_PREFIXES`).
"""

from stampede.api.auth import AdminToken, Authenticator, parse_admin_tokens
from stampede.api.channel_keys import parse_channel_keys
from stampede.domain.admission import kept_secret as _kept_secret
from stampede.settings import Settings


def jwt_secret(settings: Settings) -> str:
    return settings.jwt_secret or _kept_secret(settings.data_dir / "jwt.secret")


def admin_tokens(settings: Settings) -> list[AdminToken]:
    spec = settings.admin_tokens or f"operator:{_kept_secret(settings.data_dir / 'admin.token')}"
    return parse_admin_tokens(spec)


def authenticator(settings: Settings) -> Authenticator:
    return Authenticator(jwt_secret(settings), settings.dev_auth, tuple(admin_tokens(settings)),
                         channel_keys=parse_channel_keys(settings.channel_keys or ""))
