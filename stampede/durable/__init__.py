"""The durable side: the SQL store, the persister and its projections, audit, recovery, reconciliation."""
