"""Settings: one frozen, typed object read from `STAMPEDE_*` environment names.

No other module reads `os.environ`. Unknown `STAMPEDE_*` names are refused,
so a typo never silently falls back to a default.
"""

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stampede.errors import ConfigError

PREFIX = "STAMPEDE_"

TOOL_NAMES = {
    "TEST_PG_URL": "tests: a PostgreSQL the store tests may use",
    "TEST_REDIS_URL": "tests: a Redis whose data the tests may flush",
    "TEST_CLUSTER_URL": "tests: a node of a Redis/Valkey Cluster whose data the tests may flush",
    "PG_BIN": "the throwaway PostgreSQL of tests and benchmarks: where initdb lives",
    "PG_PASSWORD": "docker-compose.yml: the PostgreSQL password it sets up",
    "SCREENSHOTS_DIR": "page tests: where screenshots go (bin/screenshots: docs/screenshots/)",
}
"""`STAMPEDE_*` names read by tools around the service, not by it: allowed beside it."""
# Fields set from another library's environment name, never from a STAMPEDE_ one.
_FOREIGN = {"metrics_multiprocess_dir": "PROMETHEUS_MULTIPROC_DIR"}


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    """None: start an embedded Valkey under data_dir."""
    store_url: str | None = None
    """None: sqlite under data_dir."""
    data_dir: Path = Path("./var")
    jwt_secret: str | None = None
    admission_secret: str | None = None
    """HMAC key of waiting-room admission tokens; None: kept under data_dir."""
    coupon_keys: str | None = None
    """`kid:secret,...` signing coupon codes, the first active; None: one kept under data_dir."""
    admin_tokens: str | None = None
    """`role:token,...` with roles operator and viewer."""
    dev_auth: bool = False
    """Trust `X-User-Id` instead of a JWT: local trials and load tests only."""
    hold_sweep_interval_ms: int = 250
    sweep_batch: int = 500
    idempotency_ttl_s: int = 86_400
    max_batch: int = 512
    """Most claims coalesced into one script call."""
    max_body_bytes: int = 16_384
    drain_delay_ms: int = 500
    """On SIGTERM, how long /readyz fails before the listeners close."""
    header_timeout_s: int = 15
    """A connection closes when a request's headers have not all arrived this long
    after it opened or after its last answer (so it also bounds idle keep-alive)."""
    body_timeout_s: int = 10
    """A request whose body has not all arrived this long after its headers gets 408
    `request_timeout` and its connection is closed."""
    shutdown_grace_s: int = 10
    """Then how long in-flight requests may take to finish."""
    metrics: bool = True
    metrics_multiprocess_dir: Path | None = None
    """Read from PROMETHEUS_MULTIPROC_DIR (prometheus_client's own name, which the
    `--workers` master sets for its workers): /metrics aggregates every worker's files."""
    appendfsync: str = "everysec"
    """Embedded Valkey only: everysec (may lose ~1 s on a host crash) or always."""
    # durable ack: answer state changes only once Valkey has them on disk
    durable_ack: bool = False
    """Pipeline WAITAOF after every acknowledged script: no answered write is lost
    to a crash (Valkey needs appendonly yes; the embedded one has it)."""
    durable_ack_timeout_ms: int = 2000
    """Longest wait for that fsync; past it the request answers 503 unavailable."""
    persister: bool = True
    """`serve` runs the persister as its child process (off: run `stampede persist` beside it)."""
    persist_batch: int = 4000
    """Most stream entries per store transaction (per stream and read): 4000 drains
    ~20% faster than 1000 into SQLite (fewer fsyncs), bench.bench_persister."""
    # -- persister efficiency --
    persist_linger_ms: int = 100
    """After a short read (caught up), the persister waits this long before reading
    again, so a steady trickle is stored in fewer, larger transactions (a batch's
    fixed cost is several statements and an fsync); 0 reads again at once.
    A full batch never waits. 100 ms: at a few thousand claims a second a batch is
    hundreds of events, and its fixed cost (~1.4 ms of CPU into SQLite on the 2-core
    bench VM) a few µs per event; at 20 ms it was ~15 (bench/README.md)."""
    persist_claim_idle_ms: int = 30_000
    """Entries pending this long under another consumer are taken over (XAUTOCLAIM)."""
    persist_max_attempts: int = 5
    """Failures alone (or deliveries) after which an entry goes to the dead-letter table."""
    persist_stall_s: int = 30
    """Events waiting longer than this for the store mark the persister stalled
    (/readyz details, metrics, `stampede check`); readiness is not affected."""
    restart_backoff_ms: int = 500
    """`serve` restarts a dead child (persister, embedded Valkey) after this, doubled
    for each crash in the window, at most 30 s."""
    restart_limit: int = 5
    """Crashes within STAMPEDE_RESTART_WINDOW_S after which a child is left down
    (the persister) or the service exits non-zero (the embedded Valkey)."""
    restart_window_s: int = 60
    reconcile_interval_s: int = 30
    """How often `serve` compares Redis counters with the store."""
    throttle: str | None = None
    """Default scalper throttling (a ThrottleSpec as JSON) of campaigns that bring none."""
    pow_secrets: str | None = None
    """`id:secret,...` proof-of-work keys (the first signs); None: kept under data_dir."""
    trusted_proxies: str | None = None
    """Networks whose X-Forwarded-For is believed (`10.0.0.0/8,...`); None: the socket's."""
    gateway_rate_per_s: int = 0
    """Per-network limit of the public API's other routes (0: off); fails open."""
    gateway_burst: int = 200
    cors_origins: str | None = None
    """Origins (`https://shop.example,...`) whose browser pages may call the public API;
    None: no cross-origin calls."""
    live_max_listeners: int = 5000
    """Open live-feed streams a worker serves at once; past it, 503 live_full."""
    live_tick_ms: int = 250
    """How often a listened-to campaign is read for the live feed (per worker)."""
    webhook_worker: bool = True
    """`serve` runs the webhook delivery worker as its child (off: run `stampede deliver`)."""
    webhook_allowed_networks: str | None = None
    """Networks (`10.0.0.0/8,...`) webhooks may reach although they are not public
    (loopback, link-local, private); None: public addresses only."""
    webhook_poll_ms: int = 500
    """How often the delivery worker looks for newly persisted events."""
    webhook_timeout_s: int = 10
    """Whole attempt (connect: at most 3 s); past it the attempt failed."""
    webhook_backoff_ms: int = 1000
    """First retry delay after a failure, doubling each failure in a row (with jitter)."""
    webhook_backoff_max_s: int = 300
    # -- hooks: several delivery workers, a bounded delivery log, where /metrics is --
    webhook_lease_ms: int = 30_000
    """A delivery worker sends an endpoint's events under a lease this long (renewed
    while it sends); a worker that dies is taken over by another after it at most.
    Must exceed STAMPEDE_WEBHOOK_TIMEOUT_S, so an attempt never outlives its lease."""
    webhook_attempts_keep: int = 1000
    """Newest delivery attempts kept per endpoint; the worker prunes older ones."""
    webhook_attempts_max_age_s: int = 7 * 86_400
    """Delivery attempts older than this are pruned (default a week)."""
    public_metrics: bool = False
    """Also serve /metrics on the public listener (it is always on the admin one:
    stock, holds and coupon budgets are not public)."""
    # -- presales: presale codes --
    presale_secret: str | None = None
    """HMAC key that signs presale codes (every gateway must share it); None: kept
    under data_dir."""
    # -- presales: channel API keys --
    channel_keys: str | None = None
    """`channel=key,...`: a claim sending `X-Channel-Key: <key>` is made through that
    sales channel (partner and box-office integrations); None: no channel keys."""
    # -- ops console (GET / of the admin listener) --
    console_tick_ms: int = 1000
    """How often the console's live feed reads every campaign and the system (per worker,
    only while a console is open)."""
    console_max_listeners: int = 5000
    """Open console feeds a worker serves at once; past it, 503 console_full."""
    # -- points exchange
    points_url: str | None = None
    """The points service coupons priced in points are paid through (docs/points.md);
    None: such claims answer 503 points_unavailable."""
    points_token: str | None = None
    """Bearer token sent to the points service, if it wants one."""
    points_timeout_s: int = 5
    """One call to the points service (connect: 3 s at most); retried twice."""
    # -- cluster mode: Stampede on a Redis/Valkey Cluster --
    redis_cluster: bool = False
    """STAMPEDE_REDIS_URL names one node of a Redis/Valkey Cluster: run on redis-py's
    cluster client (it discovers the other nodes and follows slot moves and failovers)."""
    # -- cluster mode: replica acknowledgement (docs/cluster.md, "Replica acknowledgement")
    cluster_wait_replicas: int = 1
    """Cluster mode: every state change is answered only once this many replicas of
    its primary have it (WAIT on the script's connection), and the persister stores
    only events a replica has; so a failover loses no answered claim. 0: off."""
    cluster_wait_timeout_ms: int = 1000
    """Longest wait for those replicas; past it the request answers 503 unavailable
    (the change stands on the primary: retry with the same Idempotency-Key)."""
    # -- sharded campaigns: proactive rebalancing --
    shard_rebalance: bool = True
    """The sweeper moves units to a sharded campaign's shard before it runs dry, in
    proportion to the shards' recent sale rates (stampede/domain/rebalance.py); off:
    units move only when a claim finds its shard dry."""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'stampede.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        fields = {f.name: f for f in dataclasses.fields(cls)
                  if f.name != "extra" and f.name not in _FOREIGN}
        values: dict[str, object] = {key: Path(env[name]) for key, name in _FOREIGN.items()
                                     if env.get(name)}
        for name, raw in env.items():
            if not name.startswith(PREFIX):
                continue
            short = name[len(PREFIX):]
            if short in TOOL_NAMES:
                continue
            key = short.lower()
            if key not in fields:
                raise ConfigError(_unknown(name, fields))
            values[key] = _parse(name, raw, fields[key].type)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """What can be checked here; the formats the domain reads are checked by
        stampede.domain.config.checked() at start."""
        if self.appendfsync not in ("everysec", "always"):
            raise ConfigError("STAMPEDE_APPENDFSYNC must be everysec or always")
        if self.drain_delay_ms < 0:
            raise ConfigError("STAMPEDE_DRAIN_DELAY_MS must not be negative")
        if self.persist_linger_ms < 0:
            raise ConfigError("STAMPEDE_PERSIST_LINGER_MS must not be negative")
        for name in ("hold_sweep_interval_ms", "sweep_batch", "idempotency_ttl_s", "max_batch",
                     "max_body_bytes", "shutdown_grace_s", "header_timeout_s", "body_timeout_s",
                     "persist_batch",
                     "persist_claim_idle_ms", "persist_max_attempts", "reconcile_interval_s",
                     "persist_stall_s", "restart_backoff_ms", "restart_limit",
                     "restart_window_s",
                     "gateway_burst", "live_max_listeners", "live_tick_ms", "webhook_poll_ms",
                     "webhook_timeout_s", "webhook_backoff_ms", "webhook_backoff_max_s",
                     "webhook_lease_ms", "webhook_attempts_keep",
                     "webhook_attempts_max_age_s",
                     "console_tick_ms", "console_max_listeners",
                     "points_timeout_s",
                     "durable_ack_timeout_ms", "cluster_wait_timeout_ms"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be positive")
        if self.webhook_lease_ms <= self.webhook_timeout_s * 1000:
            raise ConfigError("STAMPEDE_WEBHOOK_LEASE_MS must exceed STAMPEDE_WEBHOOK_TIMEOUT_S "
                              f"({self.webhook_timeout_s} s): an attempt must fit in a lease")
        if self.gateway_rate_per_s < 0:
            raise ConfigError("STAMPEDE_GATEWAY_RATE_PER_S must not be negative")
        # cluster mode
        if self.redis_cluster and not self.redis_url:
            raise ConfigError("STAMPEDE_REDIS_CLUSTER needs STAMPEDE_REDIS_URL naming a node "
                              "of the cluster (the embedded Valkey is a single node)")
        if self.cluster_wait_replicas < 0:
            raise ConfigError("STAMPEDE_CLUSTER_WAIT_REPLICAS must not be negative")

    @property
    def replica_ack(self) -> bool:
        """Whether a state change waits for a cluster replica before its answer."""
        return self.redis_cluster and self.cluster_wait_replicas > 0


def _unknown(name: str, fields: Mapping[str, object]) -> str:
    known = [f.upper() for f in fields] + list(TOOL_NAMES)
    short = name[len(PREFIX):].upper()
    close = difflib.get_close_matches(short, known, n=1, cutoff=0.7) or [
        k for k in known if k.startswith(f"{short}_")][:1]  # STAMPEDE_JWT: ..._JWT_SECRET
    hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
    return f"unknown setting {name}{hint}; the settings are listed in README.md, Configuration"


def _parse(name: str, raw: str, typ: object) -> object:
    text = str(typ)
    try:
        if typ is bool or text == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if typ is int or text == "int":
            return int(raw)
        if typ is Path or "Path" in text:
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: cannot read {raw!r}") from exc
    return raw or None
