"""Every Prometheus metric of the service, defined here and nowhere else.

No user ids or codes as labels: cardinality stays bounded. The gateway
(`stampede.api.metrics`), the durable side and the runtime import what they
count from here; a test checks that no other module constructs a metric.

With several workers the master sets PROMETHEUS_MULTIPROC_DIR before they
start; each worker then writes its samples to files there and a scrape
aggregates them (prometheus_client's multiprocess mode). `Settings` reads
that name once; `scrape_registry` turns it into the registry to expose.
"""

from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from stampede.outcomes import Outcome

# Sub-millisecond buckets: a claim answered from one batched script call
# takes a fraction of a millisecond; the tail is what matters.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5)

# -- the gateway --------------------------------------------------------------

HTTP_REQUESTS = Counter("stampede_http_requests_total", "HTTP requests",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("stampede_http_request_seconds", "HTTP request latency",
                         ["route", "method"], buckets=LATENCY_BUCKETS)
CLAIMS = Counter("stampede_claims_total", "Claim answers by outcome", ["outcome"])
SCRIPT_LATENCY = Histogram("stampede_redis_script_seconds", "Lua script round trip",
                           ["script"], buckets=LATENCY_BUCKETS)
REFUSALS = Counter("stampede_refusals_total", "Claims the scalper guard refused",
                   ["reason", "scope"])
"""reason: throttled, blocked, challenge_required; scope: the limit, list or rule."""
LIMITER_FAIL_OPEN = Counter("stampede_limiter_fail_open_total",
                            "Gateway limiter checks skipped because Redis was unreachable")
COUPON_OPS = Counter("stampede_coupon_operations_total",
                     "Coupon claims, redemptions, rollbacks and gifts by answer",
                     ["op", "answer"])
"""answer is ok, replayed (the same redemption or rollback again: not a second ok), or
the refusal's reason (a key of REFUSALS, or the outcome's code): a bounded set."""

# -- state read back from Redis on a housekeeping tick ------------------------

STOCK = Gauge("stampede_stock_units", "Units per SKU by state",
              ["campaign", "sku", "state"], multiprocess_mode="livemostrecent")
HOLDS = Gauge("stampede_holds_units", "Units held (not yet confirmed) per campaign",
              ["campaign"], multiprocess_mode="livemostrecent")
COUPON_VALUE = Gauge("stampede_coupon_value", "Per drop: face value issued, discount "
                     "granted (net of rollbacks) and budget left (-1: no budget)",
                     ["campaign", "kind"], multiprocess_mode="livemostrecent")

# -- the durable side -----------------------------------------------------------

PERSISTER_LAG = Gauge("stampede_persister_lag_seconds",
                      "Age of the oldest event not yet persisted", ["campaign"],
                      multiprocess_mode="livemostrecent")
PERSISTER_PENDING = Gauge("stampede_persister_pending_events",
                          "Events delivered to the persister and not yet acknowledged",
                          ["campaign"], multiprocess_mode="livemostrecent")
PERSISTED = Counter("stampede_persister_events_total", "Events committed to the store")
DEAD_LETTERS = Counter("stampede_persister_dead_letters_total",
                       "Events that kept failing and went to the dead-letter table")
RECONCILE_DIFFERENCE = Gauge(
    "stampede_reconcile_difference_units",
    "Redis counter minus the store's, at the same event (0 when in step)",
    ["campaign", "sku", "counter"], multiprocess_mode="livemostrecent")

# -- the live feed and webhooks -------------------------------------------------

LIVE_LISTENERS = Gauge("stampede_live_listeners", "Open live-feed (SSE) connections",
                       multiprocess_mode="livesum")
LIVE_POLLS = Counter("stampede_live_polls_total",
                     "Campaign reads of the live feed's pollers (one per campaign per tick)")
WEBHOOK_DELIVERIES = Counter("stampede_webhook_deliveries_total",
                             "Webhook delivery attempts by outcome", ["outcome"])
"""outcome: delivered, failed (non-2xx answer), error (no answer: refused, timeout, ...)."""
WEBHOOK_OLDEST_UNDELIVERED = Gauge(
    "stampede_webhook_oldest_undelivered_seconds",
    "Age of the oldest persisted event an active endpoint has not yet received",
    multiprocess_mode="livemostrecent")
WEBHOOK_BACKLOG = Gauge(
    "stampede_webhook_backlog_events",
    "Persisted events after an endpoint's cursors, waiting for it (paused ones included)",
    ["endpoint"], multiprocess_mode="livemostrecent")

# -- the supervised runtime (runtime/supervisor.py, runtime/health.py) ---------
RESTARTS = Counter("stampede_restarts_total",
                   "Child processes serve restarted after they died", ["component"])
"""component: persister, deliverer (webhooks), valkey (the embedded one), worker (a
gateway process of `serve --workers N`, counted by its replacement)."""
CRASH_LOOPS = Counter("stampede_crash_loops_total",
                      "Children left down after dying too often (the crash-loop limit)",
                      ["component"])
PERSISTER_STALLED = Gauge("stampede_persister_stalled",
                          "1 while events wait longer than STAMPEDE_PERSIST_STALL_S for the "
                          "store, or the persister is down", multiprocess_mode="livemax")
CAMPAIGNS_HEALED = Counter("stampede_campaigns_healed_total",
                           "Campaigns rebuilt from the store because Redis was behind")

# -- the ops console (api/console_feed.py) --------------------------------------------
WORKER_STARTED = Gauge("stampede_worker_start_time_seconds",
                       "When each gateway worker started (unix time; one sample per live "
                       "worker, labelled by pid under serve --workers)",
                       multiprocess_mode="liveall")
CONSOLE_LISTENERS = Gauge("stampede_console_listeners",
                          "Open ops-console feeds (SSE), per worker", multiprocess_mode="liveall")
CONSOLE_READS = Counter("stampede_console_reads_total",
                        "Pipelined reads of the console feed (one per tick per worker while "
                        "a console is open, whatever the number of consoles)")

# -- operations: what the shipped alert rules watch (deploy/prometheus) ---------
REDIS_MEMORY_USED = Gauge("stampede_redis_memory_used_bytes",
                          "Redis/Valkey used_memory (INFO memory)",
                          multiprocess_mode="livemostrecent")
REDIS_MEMORY_MAX = Gauge("stampede_redis_memory_max_bytes",
                         "Redis/Valkey maxmemory (0: no limit set)",
                         multiprocess_mode="livemostrecent")
HOLDS_EXPIRED = Gauge("stampede_holds_expired_units",
                      "Units whose holds expired, per campaign, as the store counts them "
                      "(cumulative: alert on its delta)", ["campaign"],
                      multiprocess_mode="livemostrecent")
REPLICA_WAIT_TIMEOUTS = Counter(
    "stampede_cluster_replica_wait_timeouts_total",
    "Cluster mode: writes answered 503, and persister reads left pending, because WAIT "
    "saw fewer than STAMPEDE_CLUSTER_WAIT_REPLICAS replicas in time", ["source"])
"""source: write (a script's write answered 503 unavailable; a primary without a live
replica answers every write so) or persister (entries read, left pending, not stored)."""


_CLAIM_CHILDREN = {o: CLAIMS.labels(o.code if o is not Outcome.OK else "held")
                   for o in Outcome}


def count_claim(outcome: Outcome) -> None:
    _CLAIM_CHILDREN[outcome].inc()


def count_refusal(outcome: Outcome, scope: str | None) -> None:
    REFUSALS.labels(outcome.code, scope or "").inc()  # scopes are a small fixed set


def count_limiter_fail_open() -> None:
    LIMITER_FAIL_OPEN.inc()


def count_coupon_op(op: str, answer: str) -> None:
    COUPON_OPS.labels(op, answer).inc()


def count_replica_wait_timeout(source: str) -> None:
    REPLICA_WAIT_TIMEOUTS.labels(source).inc()


def observe_script(name: str, seconds: float) -> None:
    SCRIPT_LATENCY.labels(name).observe(seconds)


def scrape_registry(multiprocess_dir: Path | None) -> CollectorRegistry:
    """What a scrape exposes: this process's samples, or all workers' from their files."""
    if multiprocess_dir is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return registry
