"""The durable side: the SQL store, the persister, projections, audit, recovery, reconciliation."""
