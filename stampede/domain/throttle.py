"""Scalper throttling: the campaign's guard config, a claim's client signals, challenges.

The checks themselves run in Lua, inside the claim batch (lua/include/guard.lua),
so a refused bot costs one cheap pass of the script. This module:

- types the `throttle` object of a campaign spec (and of a PATCH), validates
  it, and compiles it into the meta field the script reads (`th`);
- carries what the gateway knows of a request (device, network, account
  age, a proof-of-work solution) into the claim's script argument (GuardArg);
- issues and verifies the signed proof-of-work challenges (stampede/domain/pow.py).
"""

import functools
import ipaddress
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from stampede.domain import pow
from stampede.errors import ConfigError, ValidationError
from stampede.state import keys, records
from stampede.state.records import (
    AccountsLimit,
    GuardArg,
    GuardConfig,
    PowDifficulty,
    RateLimit,
    RiskCheck,
)

_STRICT = {"forbid_unknown_fields": True, "kw_only": True}

DEVICE_PATTERN = r"^[A-Za-z0-9_.:+/=-]{1,128}$"
DeviceId = Annotated[str, Meta(pattern=DEVICE_PATTERN, description="client fingerprint")]
UserId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")]
NetworkText = Annotated[str, Meta(min_length=3, max_length=64,
                                  description="IPv4 /16../24 or IPv6 /56../64 network")]
CHALLENGE_TTL_MS = 120_000
RiskBound = Annotated[float, Meta(ge=-1e12, le=1e12)]


class Rate(Struct, **_STRICT):
    """A GCRA limit: a steady rate and how many requests may come at once."""
    per_s: Annotated[float, Meta(ge=0.00001, le=100_000,
                                  description="requests per second (0.00001: one a day)")]
    burst: Annotated[int, Meta(ge=1, le=100_000)] = 1


class Accounts(Struct, **_STRICT):
    """Distinct accounts seen on one device or network within a sliding window (exact)."""
    challenge_above: Annotated[int, Meta(ge=1, le=10_000)]
    """More distinct accounts than this: the caller must solve a challenge."""
    reject_above: Annotated[int, Meta(ge=1, le=10_000)]
    """More than this: refused (blocked)."""
    window_s: Annotated[int, Meta(ge=1, le=30 * 86_400)] = 3600


class RiskRule(Struct, **_STRICT):
    """A signal outside (above, below) bounds maps to an action; unknown signals never match."""
    signal: Literal["account_age_s", "lapses", "recent_campaigns"]
    """account_age_s: from the token's `created_at` claim; lapses: holds the user let
    lapse or cancelled in this campaign; recent_campaigns: campaigns the user placed a
    hold in within `recent_window_s` (this one included)."""
    action: Literal["challenge", "reject"]
    above: RiskBound | None = None
    below: RiskBound | None = None


class Lists(Struct, **_STRICT):
    users: Annotated[list[UserId], Meta(max_length=100_000)] = []
    devices: Annotated[list[DeviceId], Meta(max_length=100_000)] = []
    networks: Annotated[list[NetworkText], Meta(max_length=10_000)] = []


class ChallengeSpec(Struct, **_STRICT):
    """Proof-of-work difficulty in bits: base for one risk signal, plus step per extra one."""
    base_bits: Annotated[int, Meta(ge=0, le=32)] = 16
    step_bits: Annotated[int, Meta(ge=0, le=16)] = 2
    max_bits: Annotated[int, Meta(ge=0, le=32)] = 24


class ThrottleSpec(Struct, **_STRICT):
    """Scalper throttling of a campaign's claims (all optional; `enabled: false` turns it off)."""
    enabled: bool = True
    user: Rate | None = None
    device: Rate | None = None
    """Per X-Device-Id (claims without one skip it)."""
    network: Rate | None = None
    """Per client network (/24 IPv4, /64 IPv6)."""
    campaign: Rate | None = None
    accounts_per_device: Accounts | None = None
    accounts_per_network: Accounts | None = None
    risk: Annotated[list[RiskRule], Meta(max_length=32)] = []
    block: Lists = msgspec.field(default_factory=Lists)
    allow: Lists = msgspec.field(default_factory=Lists)
    """Allowed users, devices or networks skip device/network rates, account
    concentration and risk rules; never the per-user or campaign rate."""
    challenge: ChallengeSpec = msgspec.field(default_factory=ChallengeSpec)
    recent_window_s: Annotated[int, Meta(ge=1, le=86_400)] = 600


class ThrottlePatch(Struct, **_STRICT):
    """Each field given replaces the campaign's (null removes a limit; lists are replaced whole)."""
    enabled: bool | UnsetType = UNSET
    user: Rate | None | UnsetType = UNSET
    device: Rate | None | UnsetType = UNSET
    network: Rate | None | UnsetType = UNSET
    campaign: Rate | None | UnsetType = UNSET
    accounts_per_device: Accounts | None | UnsetType = UNSET
    accounts_per_network: Accounts | None | UnsetType = UNSET
    risk: Annotated[list[RiskRule], Meta(max_length=32)] | UnsetType = UNSET
    block: Lists | UnsetType = UNSET
    allow: Lists | UnsetType = UNSET
    challenge: ChallengeSpec | UnsetType = UNSET
    recent_window_s: Annotated[int, Meta(ge=1, le=86_400)] | UnsetType = UNSET


class ChallengeView(Struct, kw_only=True):
    """Find a decimal `counter` such that sha256(f"{token}:{counter}") starts with
    `difficulty` zero bits; send token and counter as X-Challenge-Token and
    X-Challenge-Solution with the same claim (stampede/api/static/pow-solver.js)."""
    token: str
    difficulty: int
    expires_at: datetime


_json = msgspec.json.Encoder()
_spec_decoder = msgspec.json.Decoder(ThrottleSpec)
_RISK_SIGNALS = {"account_age_s": "age", "lapses": "lapses", "recent_campaigns": "recent"}


def _rate(r: Rate | None) -> RateLimit | None:
    # Whole milliseconds: the script keeps TATs as integers (exact in Lua's doubles).
    return None if r is None else RateLimit(max(1, round(1000 / r.per_s)), r.burst)


def _accounts(a: Accounts | None, what: str) -> AccountsLimit | None:
    if a is None:
        return None
    if a.reject_above < a.challenge_above:
        raise ValidationError(f"{what}: reject_above must be at least challenge_above")
    return AccountsLimit(a.window_s * 1000, a.challenge_above, a.reject_above)


def network_bucket(text: str) -> list[str]:
    """A listed network as the /24 (IPv4) or /64 (IPv6) buckets it covers."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValidationError(f"{text!r} is not a network") from exc
    bucket, widest = (24, 16) if net.version == 4 else (64, 56)
    if net.prefixlen > bucket:  # one address: its bucket
        net = net.supernet(new_prefix=bucket)
    if net.prefixlen < widest:
        raise ValidationError(f"{text!r}: lists take networks of /{widest} to /{bucket} "
                              f"(or single addresses, taken as their /{bucket})")
    return [str(n) for n in net.subnets(new_prefix=bucket)]


def compile_config(spec: ThrottleSpec | None) -> str:
    """The `th` meta field the claim script reads ('' when unguarded)."""
    if spec is None or not spec.enabled:
        return ""
    c = spec.challenge
    if c.max_bits < c.base_bits:
        raise ValidationError("challenge: max_bits must be at least base_bits")
    checks = []
    for r in spec.risk:
        if r.above is None and r.below is None:
            raise ValidationError("a risk rule needs `above` or `below`")
        checks.append(RiskCheck(_RISK_SIGNALS[r.signal], r.action, r.above, r.below))
    reads_recent = any(r.signal == "recent_campaigns" for r in spec.risk)
    return records.encode_guard_config(GuardConfig(
        pow=PowDifficulty(c.base_bits, c.step_bits, c.max_bits),
        user=_rate(spec.user), device=_rate(spec.device), network=_rate(spec.network),
        campaign=_rate(spec.campaign),
        accounts_per_device=_accounts(spec.accounts_per_device, "accounts_per_device"),
        accounts_per_network=_accounts(spec.accounts_per_network, "accounts_per_network"),
        risk=checks, recent_window_ms=spec.recent_window_s * 1000 if reads_recent else None))


def compile_lists(spec: ThrottleSpec | None) -> str:
    """The lists hash as JSON ({field: 'a'|'b'}); a block wins over an allow."""
    fields: dict[str, str] = {}
    if spec is not None:
        for mark, lists in (("a", spec.allow), ("b", spec.block)):
            fields.update({f"u:{u}": mark for u in lists.users})
            fields.update({f"d:{d}": mark for d in lists.devices})
            for n in lists.networks:
                fields.update({f"n:{b}": mark for b in network_bucket(n)})
    return _json.encode(fields).decode()


def meta_fields(spec: ThrottleSpec | None) -> dict[str, str]:
    """Meta fields of a campaign's throttle (define_campaign.lua ARGV[10])."""
    spec_json = "" if spec is None else _json.encode(spec).decode()
    return {"th": compile_config(spec), "th_spec": spec_json, "th_lists": compile_lists(spec)}


def merge(current: str, patch: ThrottlePatch) -> ThrottleSpec:
    """The campaign's spec (meta th_spec, '' for none) with the patch's fields replaced."""
    base = _spec_decoder.decode(current) if current else ThrottleSpec()
    changes = {f: getattr(patch, f) for f in patch.__struct_fields__
               if getattr(patch, f) is not UNSET}
    merged = msgspec.structs.replace(base, **changes)
    compile_config(merged)  # validates before anything is written
    return merged


def in_force(compiled: str, spec: str) -> ThrottleSpec | None:
    """The spec a campaign's meta holds, if it is on (for stats)."""
    return _spec_decoder.decode(spec) if compiled and spec else None


def parse_default(raw: str | None) -> ThrottleSpec | None:
    """The global default (STAMPEDE_THROTTLE, JSON) for campaigns that bring none."""
    if not raw:
        return None
    try:
        spec = _spec_decoder.decode(raw)
        compile_config(spec)
        compile_lists(spec)
    except (msgspec.DecodeError, msgspec.ValidationError, ValidationError) as exc:
        raise ConfigError(f"STAMPEDE_THROTTLE: {exc}") from exc
    return spec


class ClientSignals(Struct, frozen=True):
    """What the gateway knows of a request besides the user. (One per claim: a frozen
    Struct is built in a tenth of the time a frozen dataclass takes.)"""
    device: str = ""
    network: str = ""
    account_age_s: int = -1
    challenge: str | None = None
    solution: str | None = None


class Guard(Struct, frozen=True):
    """A claim's guard context, with its solution already verified (engine side)."""
    device: str = ""
    network: str = ""
    age: int = -1
    pow_bits: int = -1
    pow_exp: int = -1
    nonce: str = ""


NO_GUARD = Guard()


class Challenges:
    """Issues and checks proof-of-work challenges; keys rotate (the first signs)."""

    def __init__(self, secrets: dict[str, bytes]) -> None:
        if not secrets:
            raise ConfigError("proof-of-work needs at least one key")
        self._keys = secrets
        self._signing = next(iter(secrets.values()))

    def issue(self, user: str, cid: str, difficulty: int) -> ChallengeView:
        now = int(time.time() * 1000)
        ch = pow.issue(self._signing, user, cid, difficulty, now, CHALLENGE_TTL_MS)
        expires = datetime.fromtimestamp(ch.expires_ms / 1000, tz=UTC)
        return ChallengeView(token=ch.token, difficulty=ch.difficulty, expires_at=expires)

    def guard(self, cid: str, user: str, client: ClientSignals | None) -> Guard:
        """The claim's guard context; a solution counts only if genuine and for this claimant."""
        if client is None:
            return NO_GUARD
        bits, exp, nonce = -1, -1, ""
        if client.challenge and client.solution and len(client.challenge) <= 1024:
            verdict = pow.verify(self._keys, client.challenge, client.solution, user, cid,
                                 int(time.time() * 1000))
            if verdict.ok:
                bits, exp, nonce = verdict.difficulty, verdict.expires_ms, verdict.nonce
        return Guard(client.device, client.network, client.account_age_s, bits, exp, nonce)


def parse_keys(spec: str) -> dict[str, bytes]:
    """`id:secret,...` (STAMPEDE_POW_SECRETS) into keys; the first signs, all verify."""
    out: dict[str, bytes] = {}
    for item in (p.strip() for p in spec.split(",") if p.strip()):
        kid, sep, secret = item.partition(":")
        if not sep or len(secret) < 16:
            raise ConfigError("STAMPEDE_POW_SECRETS must be id:secret,... (secrets of 16+ chars)")
        out[kid] = secret.encode()
    return out


@functools.lru_cache(maxsize=1024)
def _nonce_prefix(cid: str) -> str:
    """Key prefix of a campaign's spent challenge nonces (built by stampede/state/keys.py)."""
    return keys.nonce_key(cid, "")


def key_slots(ks: list[str]) -> Callable[[str], int]:
    """`slot(key)`: the KEYS index (1-based) of `key`, appended to `ks` once per batch."""
    slots: dict[str, int] = {}

    def slot(key: str) -> int:
        found = slots.get(key)
        if found is None:
            ks.append(key)
            found = slots[key] = len(ks)
        return found

    return slot


def guard_arg(cid: str, user: str, g: Guard, recent: int,
              slot: Callable[[str], int]) -> GuardArg:
    """A claim's guard context as its script argument takes it (records.GuardArg).

    `slot(key)` returns the KEYS index of a key, adding it once per batch. Only a
    solved challenge brings a key of its own (its nonce); rates and accounts are
    fields of the campaign's guard hash, named in the script from user, device
    and network.
    """
    if g is NO_GUARD:  # the common case of claims without client signals
        return GuardArg(device="", network="", age=-1, recent=recent, pow_bits=-1, pow_exp=-1,
                        k_nonce=0)
    return GuardArg(device=g.device, network=g.network, age=g.age, recent=recent,
                    pow_bits=g.pow_bits, pow_exp=g.pow_exp,
                    k_nonce=slot(_nonce_prefix(cid) + g.nonce) if g.nonce else 0)
