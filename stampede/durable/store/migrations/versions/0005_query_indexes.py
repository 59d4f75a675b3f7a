"""Indexes for the query and export API (stampede/durable/queries.py).

Keyset pages walk these in order: claims by campaign and by user in creation
order, redemptions by merchant and by day, events by type and time (the audit
log). Events are also indexed by the `user` and `coupon` fields of their JSON
body (an expression index, spelled in each backend's JSON functions; queries.py
uses the very same expressions), so a user's or a coupon's history is a lookup,
not a scan.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON_FIELDS = ("user", "coupon")


def json_field_sql(dialect: str, name: str) -> str:
    """The SQL of the event body's `name` field; the index and the queries share it."""
    if dialect == "sqlite":
        return f"json_extract(data, '$.{name}')"
    return f"((data::json) ->> '{name}')"


def upgrade() -> None:
    op.create_index("ix_claims_campaign_created", "claims",
                    ["campaign_id", "created_ms", "claim_id"])
    op.create_index("ix_claims_user_created", "claims", ["user_id", "created_ms", "claim_id"])
    op.create_index("ix_redemptions_merchant_time", "redemptions",
                    ["merchant_id", "redeemed_ms", "redemption_id"])
    op.create_index("ix_redemptions_time", "redemptions", ["redeemed_ms", "redemption_id"])
    op.create_index("ix_events_type_ts", "events", ["type", "ts"])
    dialect = op.get_bind().dialect.name
    for name in JSON_FIELDS:
        op.execute(f"CREATE INDEX ix_events_{name} ON events ({json_field_sql(dialect, name)})")


def downgrade() -> None:
    for name in JSON_FIELDS:
        op.drop_index(f"ix_events_{name}", table_name="events")
    op.drop_index("ix_events_type_ts", table_name="events")
    op.drop_index("ix_redemptions_time", table_name="redemptions")
    op.drop_index("ix_redemptions_merchant_time", table_name="redemptions")
    op.drop_index("ix_claims_user_created", table_name="claims")
    op.drop_index("ix_claims_campaign_created", table_name="claims")
