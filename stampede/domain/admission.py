"""Waiting-room admission: signed tokens and honest wait estimates.

An admission token is `<payload>.<mac>`, both base64url: the payload is
`campaign \\n user \\n expiry_ms`, the mac HMAC-SHA256 over it with the
service's admission secret. The engine checks the signature and that the
token names this campaign and this user (in constant time); the claim
script checks the expiry against server time and that the turn is still
open, so the gateway's clock never decides.
"""

import base64
import binascii
import hashlib
import hmac
import math
import os
import secrets
from pathlib import Path
from typing import Any

from stampede.domain.models import QueueTicket, from_ms

_DOMAIN = b"stampede-admission-v1\n"


SECRET_PREFIXES = {"admin.token": "stpa_", "jwt.secret": "stpj_", "admission.secret": "stpw_",
                   "pow.secret": "stpp_", "coupon.secret": "stpc_",
                   "presale.secret": "stps_"}  # presales: presale codes
"""Generated secrets start with their kind (as `ghp_` does): recognisable in a leak, and
never with `-`, so `--admin-token "$(cat var/admin.token)"` is never read as an option.
Secrets kept before the prefixes keep working: a kept file is read as it is."""


def new_secret(name: str) -> str:
    return SECRET_PREFIXES.get(name, "stp_") + secrets.token_urlsafe(32)


def kept_secret(path: Path) -> str:
    """A random secret kept in `path` (mode 0600), made once even with racing workers."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_secret(path.name))
        try:
            os.link(tmp, path)  # atomic: the first worker's secret wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AdmissionTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(_DOMAIN + secret.encode()).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def sign(self, cid: str, user: str, expires_ms: int) -> str:
        payload = f"{cid}\n{user}\n{expires_ms}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, cid: str, user: str) -> int | None:
        """The token's expiry (ms) if it is ours and names `cid` and `user`, else None."""
        if len(token) > 1024 or token.count(".") != 1:
            return None
        payload_part, mac_part = token.split(".")
        try:
            payload, mac = _unb64(payload_part), _unb64(mac_part)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        fields = payload.split(b"\n")
        if len(fields) != 3 or not hmac.compare_digest(fields[0], cid.encode()) \
                or not hmac.compare_digest(fields[1], user.encode()):
            return None
        try:
            return int(fields[2])
        except ValueError:
            return None


def estimated_wait_s(ahead: int | None, tokens: float, rate: float, paused: bool,
                     until_open_s: float = 0.0) -> float | None:
    """Seconds until `ahead` more tickets are admitted at `rate` per second.

    Tokens already accrued admit at once; `ahead` counts the ticket itself.
    None while paused (no honest figure exists). The active-user cap can
    only slow admission, so this is a lower bound when the room is full.
    """
    if paused or ahead is None:
        return None
    return round(until_open_s + max(0.0, (ahead - math.floor(tokens)) / rate), 3)


def ticket_view(cid: str, user: str, reply: list[Any], tokens: AdmissionTokens) -> QueueTicket:
    """A queue_ticket reply (lua/queue_ticket.lua) as the user sees it, token included."""
    (_, _created, status, position, served, milli, rate, paused, early, early_count,
     opens_ms, now, window_end, token_ttl_ms, _active) = reply
    rate_f, paused_b, tokens_f = float(rate), bool(int(paused)), float(milli) / 1000
    until_open = max(0.0, (int(opens_ms) - int(now)) / 1000)
    ahead: int | None = None
    if int(position):
        ahead = max(0, int(position) - int(served))
        wait = estimated_wait_s(ahead, tokens_f, rate_f, paused_b) if ahead else 0.0
    else:  # before the draw: the expected place among the early arrivals
        wait = estimated_wait_s(math.ceil((int(early_count) + 1) / 2), 0, rate_f, paused_b,
                                until_open)
    view = QueueTicket(campaign_id=cid, status=status, position=int(position) or None,
                       early=bool(int(early)), serving=int(served), ahead=ahead,
                       estimated_wait_s=wait, rate_per_s=rate_f, paused=paused_b,
                       early_arrivals=int(early_count), opens_at=from_ms(int(opens_ms)))
    if status == "admitted":
        expires = min(int(now) + int(token_ttl_ms), int(window_end))
        view.admitted_until = from_ms(int(window_end))
        view.admission_token = tokens.sign(cid, user, expires)
        view.token_expires_at = from_ms(expires)
    return view
