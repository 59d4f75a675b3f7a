"""Indexes for the query and export API (stampede/durable/queries.py).

Keyset pages walk these in order: claims by campaign and by user in creation
order, redemptions by merchant and by time, events by type and time (the
audit log, and a user's waitlist events).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_claims_campaign_created", "claims",
                    ["campaign_id", "created_ms", "claim_id"])
    op.create_index("ix_claims_user_created", "claims", ["user_id", "created_ms", "claim_id"])
    op.create_index("ix_redemptions_merchant_time", "redemptions",
                    ["merchant_id", "redeemed_ms", "redemption_id"])
    op.create_index("ix_redemptions_time", "redemptions", ["redeemed_ms", "redemption_id"])
    op.create_index("ix_events_type_ts", "events", ["type", "ts"])


def downgrade() -> None:
    op.drop_index("ix_events_type_ts", table_name="events")
    op.drop_index("ix_redemptions_time", table_name="redemptions")
    op.drop_index("ix_redemptions_merchant_time", table_name="redemptions")
    op.drop_index("ix_claims_user_created", table_name="claims")
    op.drop_index("ix_claims_campaign_created", table_name="claims")
