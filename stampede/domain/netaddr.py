"""Which network a client is in, for per-network limits.

IPv4 clients are grouped by /24 and IPv6 by /64: one household, campus or
mobile carrier NAT shares a prefix, and a bot farm rotating addresses within
its allocation stays in one bucket. The address comes from the socket, or
from X-Forwarded-For only when the socket peer is a configured trusted proxy
(otherwise anyone could claim any address).
"""

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> list[Network]:
    """`"10.0.0.0/8, ::1/128"` into networks (for trusted proxies and lists)."""
    return [ipaddress.ip_network(part.strip(), strict=False)
            for part in spec.split(",") if part.strip()]


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: Iterable[Network]) -> str | None:
    """The client's address: walk X-Forwarded-For right to left past trusted proxies."""
    if peer is None:
        return None
    trusted = list(trusted)
    chain = [peer]
    if forwarded_for:
        chain = [p.strip() for p in forwarded_for.split(",") if p.strip()] + [peer]
    for hop in reversed(chain):
        try:
            ip = ipaddress.ip_address(hop)
        except ValueError:
            return hop if hop == peer else None
        if not any(ip in net for net in trusted):
            return str(ip)
    return chain[0]


def network_of(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) bucket of an address, as text."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
