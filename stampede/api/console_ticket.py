"""Short-lived tickets that let a browser's EventSource open the console's live feed.

EventSource cannot send an Authorization header. Putting the admin token in
the stream's URL would copy a long-lived secret into access logs, proxy logs
and the browser's history; instead the page asks for a ticket with its token
(an authenticated POST) and opens the stream with that. A ticket

- names the admin token it was issued to and expires after TICKET_TTL_S,
- is an HMAC of that name and expiry keyed by the token itself, so every
  worker can check it without shared state, and changing the token revokes it,
- admits only the read-only feed: it is worth nothing on any other route.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass

from stampede.api.auth import AdminToken

TICKET_TTL_S = 60
"""Long enough to open (or reopen) a stream; an open stream is not cut when it lapses."""


@dataclass(frozen=True, slots=True)
class Ticket:
    value: str
    expires_s: int


def _mac(token: AdminToken, expires_s: int) -> str:
    message = f"console-live|{token.name}|{expires_s}".encode()
    return hmac.new(token.token.encode(), message, hashlib.sha256).hexdigest()[:32]


def issue(token: AdminToken, now_s: float | None = None) -> Ticket:
    expires = int(now_s if now_s is not None else time.time()) + TICKET_TTL_S
    return Ticket(f"{token.name}.{expires}.{_mac(token, expires)}", expires)


def check(value: str, tokens: tuple[AdminToken, ...], now_s: float | None = None
          ) -> AdminToken | str:
    """The admin token a ticket was issued to, or why it is refused."""
    name, _, rest = value.partition(".")
    expires_text, _, mac = rest.partition(".")
    if not (name and expires_text.isdigit() and mac):
        return "malformed"
    expires = int(expires_text)
    now = now_s if now_s is not None else time.time()
    found = next((t for t in tokens if t.name == name), None)
    if found is None or not hmac.compare_digest(_mac(found, expires), mac):
        return "not one this service issued"
    if expires <= now or expires > now + TICKET_TTL_S + 5:
        return "expired"
    return found
