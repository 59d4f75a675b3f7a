"""The domain's checks of the settings it parses, run once at start.

`Settings` checks what it can alone (names, numbers, ranges); the formats the
domain reads (the default guard, proof-of-work keys, trusted proxies, coupon
keys) are checked here, so a malformed value is refused before anything
serves, and settings.py imports no folder.
"""

from stampede.domain import netaddr, throttle
from stampede.domain.coupons.codes import CodeKeys
from stampede.errors import ConfigError
from stampede.settings import Settings


def checked(settings: Settings) -> Settings:
    """`settings` itself, once the domain can read every value it will use (else ConfigError)."""
    if settings.coupon_keys is not None:
        CodeKeys.parse(settings.coupon_keys)
    throttle.parse_default(settings.throttle)
    if settings.pow_secrets:
        throttle.parse_keys(settings.pow_secrets)
    try:
        netaddr.parse_networks(settings.trusted_proxies or "")
    except ValueError as exc:
        raise ConfigError(f"STAMPEDE_TRUSTED_PROXIES: {exc}") from exc
    return settings
