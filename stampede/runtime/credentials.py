"""Credentials the service needs, generated under the data dir when not configured.

With no configuration `stampede serve` still runs safely: it makes a random
JWT secret and an operator token, keeps them (mode 0600) under the data dir,
and prints where they are.
"""

import secrets
from pathlib import Path

from stampede.api.auth import AdminToken, Authenticator, parse_admin_tokens
from stampede.settings import Settings


def _kept_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


def jwt_secret(settings: Settings) -> str:
    return settings.jwt_secret or _kept_secret(settings.data_dir / "jwt.secret")


def admin_tokens(settings: Settings) -> list[AdminToken]:
    spec = settings.admin_tokens or f"operator:{_kept_secret(settings.data_dir / 'admin.token')}"
    return parse_admin_tokens(spec)


def authenticator(settings: Settings) -> Authenticator:
    return Authenticator(jwt_secret(settings), settings.dev_auth, tuple(admin_tokens(settings)))
