"""Steady shopping: a constant crowd that browses, claims, pays or cancels, waits in line.

Each simulated person loops: read the campaign, claim one unit, think, then
confirm or cancel. A sold-out claim puts them on the SKU's waitlist (when
the campaign has one: `--waitlist-length`); while on it they poll their
entry, and confirm the offer when units come back to them. Cancelled holds
and lapsed offers are what feed the waitlist. Use -u/-r/-t as usual:

    locust -f loadtest/steady_shopping.py --headless -u 200 -r 50 -t 60s \\
        --host http://127.0.0.1:8000 --create-campaign \\
        --stock 100 --waitlist-length 1000
"""

import random

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser
from scenario_kit import judge, new_identity

# A join can find units back in stock (claim it instead), or the list full.
WAITLIST_RACES = frozenset({"conflict"})


class Browser(FastHttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.user_id, self.headers = new_identity(self.environment)
        self.waiting = False

    @task(3)
    def browse(self) -> None:
        opts = self.environment.parsed_options
        with self.client.get(f"/v1/campaigns/{opts.campaign}", name="/v1/campaigns/[id]",
                             catch_response=True) as resp:
            judge(self.environment, resp, (200,))

    @task(2)
    def buy(self) -> None:
        if self.waiting:
            self._check_waitlist()
            return
        opts = self.environment.parsed_options
        with self.client.post(f"/v1/campaigns/{opts.campaign}/claims",
                              json={"sku": opts.sku, "qty": 1}, headers=self.headers,
                              name="/v1/campaigns/[id]/claims", catch_response=True) as resp:
            outcome = judge(self.environment, resp, (201,))
            if outcome == "sold_out" and opts.waitlist_length > 0:
                self._join_waitlist()
            if outcome != "ok":
                return
            claim_id = resp.json()["claim_id"]
        with self.client.get(f"/v1/claims/{claim_id}", headers=self.headers,
                             name="/v1/claims/[id]", catch_response=True) as resp:
            judge(self.environment, resp, (200,))
        self._settle(claim_id, "confirm" if random.random() < 0.6 else "cancel")

    def _settle(self, claim_id: str, action: str) -> None:
        with self.client.post(f"/v1/claims/{claim_id}/{action}", headers=self.headers,
                              name=f"/v1/claims/[id]/{action}", catch_response=True) as resp:
            judge(self.environment, resp, (200,))

    def _join_waitlist(self) -> None:
        opts = self.environment.parsed_options
        with self.client.post(f"/v1/campaigns/{opts.campaign}/waitlist",
                              json={"sku": opts.sku, "qty": 1}, headers=self.headers,
                              name="/v1/campaigns/[id]/waitlist", catch_response=True) as resp:
            self.waiting = judge(self.environment, resp, (200, 201), WAITLIST_RACES) == "ok"

    def _check_waitlist(self) -> None:
        """Poll my entry; an offer is a hold in my name: pay for it (or, rarely, pass)."""
        opts = self.environment.parsed_options
        with self.client.get(f"/v1/campaigns/{opts.campaign}/waitlist?sku={opts.sku}",
                             headers=self.headers, name="/v1/campaigns/[id]/waitlist",
                             catch_response=True) as resp:
            if judge(self.environment, resp, (200,)) != "ok":
                return
            entries = resp.json()["entries"]
        if not entries:  # skipped (limits used up) or the offer lapsed: back to browsing
            self.waiting = False
            return
        offer = entries[0].get("offer")
        if entries[0]["status"] == "offered" and offer:
            self.waiting = False
            self._settle(offer["claim_id"], "confirm" if random.random() < 0.9 else "cancel")
