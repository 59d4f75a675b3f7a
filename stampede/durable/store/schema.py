"""The durable store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

`events` is the truth: one row per stream entry, keyed by (campaign, seq).
Everything else is a projection folded from the events in seq order, so a
replayed or early event can never be applied twice or out of turn.
Changes to these tables are alembic migrations (stampede/durable/store/migrations).
"""

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, text

metadata = MetaData()

events = Table(
    "events", metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("stream_id", String(48), nullable=False),
    Column("data", Text, nullable=False),  # the entry's other fields, a JSON object
    # query API (0005): the audit log, and a user's waitlist events, by type and time
    Index("ix_events_type_ts", "type", "ts"),
)

campaigns = Table(
    "campaigns", metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("spec", Text, nullable=False, default=""),
    Column("state", String(16), nullable=False, default="active"),
    Column("opens_ms", BigInteger, nullable=False, default=0),
    Column("closes_ms", BigInteger, nullable=False, default=0),
    Column("hold_ttl_ms", BigInteger, nullable=False, default=0),
    Column("per_user", Integer, nullable=False, default=-1),
    Column("max_qty", Integer, nullable=False, default=1),
    Column("epoch", BigInteger, nullable=False, default=0),
    Column("defined_seq", BigInteger, nullable=False, default=0),
    # Events 1..applied_seq are folded into the projections; max_seq above it
    # means a later event came first and waits for the gap to fill.
    Column("applied_seq", BigInteger, nullable=False, default=0),
    Column("max_seq", BigInteger, nullable=False, default=0),
)

skus = Table(
    "skus", metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("price", BigInteger, nullable=False),
    Column("per_user", Integer, nullable=False),
    Column("released", BigInteger, nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False),
    Column("sold", BigInteger, nullable=False),
    Column("expired", BigInteger, nullable=False),
    Column("cancelled", BigInteger, nullable=False),
)

claims = Table(
    "claims", metadata,
    Column("claim_id", String(100), primary_key=True),
    Column("campaign_id", String(64), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("deadline_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_seq", BigInteger, nullable=False),
    Column("idem_key", Text),
    Column("fingerprint", Text),
    # presales (0015): the bundle claim a line was held for; NULL for a claim alone
    Column("bundle_id", String(100)),
    # query API (0005): keyset pages in creation order, by campaign and by user (the
    # first also serves lookups by campaign alone: 0012 dropped ix_claims_campaign)
    Index("ix_claims_campaign_created", "campaign_id", "created_ms", "claim_id"),
    Index("ix_claims_user_created", "user_id", "created_ms", "claim_id"),
    Index("ix_claims_bundle", "bundle_id", sqlite_where=text("bundle_id IS NOT NULL"),
          postgresql_where=text("bundle_id IS NOT NULL")),
)

claim_history = Table(
    "claim_history", metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("claim_id", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Index("ix_claim_history_claim", "claim_id"),
)

dead_letters = Table(
    "dead_letters", metadata,
    Column("stream", String(100), primary_key=True),
    Column("entry_id", String(48), primary_key=True),
    Column("campaign_id", String(64), nullable=False),
    Column("fields", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("deliveries", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
)

coupons = Table(
    "coupons", metadata,
    Column("coupon_id", String(100), primary_key=True),
    Column("campaign_id", String(64), nullable=False),
    Column("template", String(64), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # active, used, expired
    Column("uses", Integer, nullable=False),
    Column("uses_left", Integer, nullable=False),
    Column("face_value", BigInteger, nullable=False),  # every use's worth, for the budget
    Column("valid_from_ms", BigInteger, nullable=False),
    Column("valid_to_ms", BigInteger, nullable=False),
    Column("claim_id", String(100), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_seq", BigInteger, nullable=False),
    Index("ix_coupons_campaign", "campaign_id"),
    Index("ix_coupons_user", "user_id"),
)

redemptions = Table(
    "redemptions", metadata,
    Column("redemption_id", String(100), primary_key=True),
    Column("campaign_id", String(64), nullable=False),
    Column("coupon_id", String(100), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("order_id", String(128), nullable=False),
    Column("order_amount", BigInteger, nullable=False),
    Column("discount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # redeemed, rolled_back
    Column("redeemed_ms", BigInteger, nullable=False),
    Column("rolled_back_ms", BigInteger),
    Column("updated_seq", BigInteger, nullable=False),
    Index("ix_redemptions_campaign", "campaign_id"),
    Index("ix_redemptions_coupon", "coupon_id"),
    # query API (0005): by merchant and by time
    Index("ix_redemptions_merchant_time", "merchant_id", "redeemed_ms", "redemption_id"),
    Index("ix_redemptions_time", "redeemed_ms", "redemption_id"),
)

# -- webhooks: endpoints, how far each has received, and every attempt ---------

webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("endpoint_id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # a JSON list of event types, or ["*"]
    Column("campaign_id", String(64)),  # None: every campaign
    Column("secret", Text, nullable=False),
    Column("old_secret", Text),  # still signs, beside the new one, until old_secret_until_ms
    Column("old_secret_until_ms", BigInteger),
    Column("paused", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),  # consecutive
    Column("next_attempt_ms", BigInteger, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_ms", BigInteger, nullable=False),
)

webhook_cursors = Table(
    "webhook_cursors", metadata,
    Column("endpoint_id", String(40), primary_key=True),
    Column("campaign_id", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # events up to here are delivered (or not wanted)
)

webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("attempt_id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(40), nullable=False),
    Column("message_id", String(100), nullable=False),  # <campaign>.<seq>
    Column("ts", BigInteger, nullable=False),
    Column("status", Integer),  # the HTTP status; None: no answer
    Column("outcome", String(16), nullable=False),  # delivered, failed, error
    Column("error", Text),
    Column("event_type", String(64)),  # None on attempts made before 0004
    Column("latency_ms", Integer),  # request sent to answer (or failure)
    Index("ix_webhook_attempts_endpoint", "endpoint_id", "attempt_id"),
    Index("ix_webhook_attempts_ts", "ts"),  # pruning by age
)

# -- webhooks: one delivery worker per endpoint at a time (0010) ----------------

webhook_leases = Table(
    "webhook_leases", metadata,
    Column("endpoint_id", String(40), primary_key=True),
    Column("owner", String(120), nullable=False),  # host:pid:random of the worker
    Column("until_ms", BigInteger, nullable=False),  # past it, any worker may take over
)

# -- after-sale: refunds, one row per refund (migration 0006) ----------------------

refunds = Table(
    "refunds", metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("claim_id", String(100), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("left_qty", Integer, nullable=False),  # the claim's units still refundable
    Column("units_to", String(16), nullable=False),  # restock or retire
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("buyer", Integer, nullable=False),
    Column("idem_key", Text),
    Column("fingerprint", Text),
    Column("ts", BigInteger, nullable=False),
    Column("tickets", Text, nullable=False, default=""),  # refunded ticket numbers, "2,1"
    Index("ix_refunds_claim", "claim_id"),
)

# -- after-sale: check-ins, one row per admitted ticket (migration 0006) -------------

checkins = Table(
    "checkins", metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ticket_id", String(110), nullable=False),
    Column("claim_id", String(100), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("gate", String(64), nullable=False),
    Column("scanner", String(64), nullable=False),
    Column("scanned_ms", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Index("ix_checkins_ticket", "ticket_id"),
)

# -- leftovers: admin actions that are no campaign's event (durable/admin_audit.py) --------
admin_actions = Table(
    "admin_actions", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("campaign_id", String(64), nullable=False, default=""),
    Column("type", String(32), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("data", Text, nullable=False),  # actor, action, target, status, before, after
    Index("ix_admin_actions_ts", "ts"),
)
