"""Presales: a bundle claim in the store. `claims.bundle_id` names the bundle claim a
line was held for (NULL for a claim alone), indexed only where set so single claims
cost the persister nothing more; a bundle's own `claim_history` row (its bundle_held
event) lets the admin lookup find the bundle by its id. Stores written before this
revision are filled in from their events.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("claims", sa.Column("bundle_id", sa.String(100), nullable=True))
    op.create_index("ix_claims_bundle", "claims", ["bundle_id"],
                    sqlite_where=sa.text("bundle_id IS NOT NULL"),
                    postgresql_where=sa.text("bundle_id IS NOT NULL"))
    sqlite = op.get_bind().dialect.name == "sqlite"

    def field(name: str) -> str:
        return f"json_extract(data, '$.{name}')" if sqlite else f"((data::json) ->> '{name}')"
    # each line's claim_held names its bundle (found through the line's history row)
    op.execute(f"""
        UPDATE claims SET bundle_id = (
            SELECT {field('bundle')} FROM events e JOIN claim_history h
              ON h.campaign_id = e.campaign_id AND h.seq = e.seq
            WHERE h.claim_id = claims.claim_id AND h.status = 'held'
              AND e.type = 'claim_held')""")
    op.execute("UPDATE claims SET bundle_id = NULL WHERE bundle_id = ''")
    op.execute(f"""
        INSERT INTO claim_history (campaign_id, seq, claim_id, status, ts)
        SELECT campaign_id, seq, {field('claim')}, 'held', ts FROM events
        WHERE type = 'bundle_held'""")


def downgrade() -> None:
    op.execute("DELETE FROM claim_history WHERE (campaign_id, seq) IN "
               "(SELECT campaign_id, seq FROM events WHERE type = 'bundle_held')")
    op.drop_index("ix_claims_bundle", table_name="claims")
    with op.batch_alter_table("claims") as batch:
        batch.drop_column("bundle_id")
