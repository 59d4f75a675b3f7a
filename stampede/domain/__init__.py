"""The domain: campaigns, claims, the claim gate and scalper guard, queues and coupons; no HTTP."""
