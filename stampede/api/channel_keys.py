"""Presales: channel API keys, a credential of partner and box-office integrations.

STAMPEDE_CHANNEL_KEYS is `channel=key,...`. A claim that sends `X-Channel-Key: <key>`
is made through that key's sales channel (a SKU's allocations for it serve it). Keys
are kept only as SHA-256 digests and a presented key is compared with every one in
constant time, so neither memory nor timing says which matched. A key names the
channel alone: the user is still the token's (or dev auth's). When the user's
credential carries a channel too (the JWT's `channel`, or `X-Channel` with dev auth)
they must agree, else 403 `channel_mismatch` naming both: a key never silently
overrides what a token was issued for.
"""

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from stampede.api.errors import ApiError
from stampede.api.headers import header
from stampede.domain.allocations import check_channel
from stampede.errors import ConfigError, ValidationError

HEADER = "X-Channel-Key"


@dataclass(frozen=True)
class ChannelKey:
    channel: str
    digest: bytes
    """SHA-256 of the key: the key itself is not kept."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_channel_keys(spec: str) -> tuple[ChannelKey, ...]:
    """`channel=key,...` into keys; ConfigError for a bad channel name, an empty key or
    a key given twice (it could not say which channel it is)."""
    found: list[ChannelKey] = []
    for item in (p.strip() for p in spec.split(",") if p.strip()):
        channel, sep, key = item.partition("=")
        try:
            check_channel(channel)
        except ValidationError as exc:
            raise ConfigError(f"STAMPEDE_CHANNEL_KEYS must be channel=key,...: {exc}") from exc
        if not sep or len(key) < 16:
            raise ConfigError(f"STAMPEDE_CHANNEL_KEYS: the key of channel {channel!r} must "
                              "be at least 16 characters")
        digest = _digest(key)
        if any(k.digest == digest for k in found):
            raise ConfigError(f"STAMPEDE_CHANNEL_KEYS: channel {channel!r} repeats a key "
                              "already given")
        found.append(ChannelKey(channel, digest))
    return tuple(found)


def claim_channel(request: web.Request, keys: tuple[ChannelKey, ...],
                  credential_channel: str | None) -> str | None:
    """The channel of a claim: its X-Channel-Key's, else the user credential's.
    403 `invalid_channel_key` for a key that is none of ours, 403 `channel_mismatch`
    when the credential names another channel."""
    presented = header(request, HEADER)
    if presented is None:
        return credential_channel
    digest = _digest(presented)
    channel = None
    for k in keys:  # every one compared: timing says nothing of which matched
        if hmac.compare_digest(k.digest, digest):
            channel = k.channel
    if channel is None:
        raise ApiError.of("invalid_channel_key")
    if credential_channel is not None and credential_channel != channel:
        raise ApiError.of("channel_mismatch", key_channel=channel,
                          credential_channel=credential_channel)
    return channel
