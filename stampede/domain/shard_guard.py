"""The scalper guard of a sharded campaign: each shard guards the claims it serves.

A user is served by one shard, so the per-user rate is exact. A device's, a
network's and the campaign's claims spread over the N shards (by user), so each
shard applies those rates divided by N (the steady rate / N, the burst / N rounded
up): added over the shards they allow what the spec says, plus at most N - 1
requests of burst. Accounts per device and per network are counted by each shard
for the accounts it serves, at the spec's limits: a device gets at most N times its
accounts limit in all (docs/shards.md states both bounds).
"""

import math

import msgspec

from stampede.domain import throttle
from stampede.domain.throttle import Rate, ThrottleSpec


def _divided(rate: Rate | None, n: int) -> Rate | None:
    if rate is None:
        return None
    return Rate(per_s=rate.per_s / n, burst=math.ceil(rate.burst / n))


def shard_spec(spec: ThrottleSpec, n: int) -> ThrottleSpec:
    """What each of n shards enforces of a campaign's throttle."""
    return msgspec.structs.replace(spec, device=_divided(spec.device, n),
                                   network=_divided(spec.network, n),
                                   campaign=_divided(spec.campaign, n))


def meta_fields(spec: ThrottleSpec | None, n: int) -> dict[str, str]:
    """Each shard's throttle meta fields: the divided limits compiled (`th`), the spec
    as defined kept for stats (`th_spec`)."""
    fields = throttle.meta_fields(spec)
    if spec is not None:
        fields["th"] = throttle.compile_config(shard_spec(spec, n))
    return fields
