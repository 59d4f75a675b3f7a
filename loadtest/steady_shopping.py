"""Steady shopping: a constant crowd that browses, claims, pays or cancels, retries.

Each simulated person loops: read the campaign, claim one unit, think, then
confirm or cancel; an expected refusal (sold out, over the limit) sends them
back to browsing. Use -u/-r/-t as usual:

    locust -f loadtest/steady_shopping.py --headless -u 200 -r 50 -t 60s \\
        --host http://127.0.0.1:8000 --create-campaign --admin-token "$(cat var/admin.token)"
"""

import random

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser
from scenario_kit import judge, new_identity


class Browser(FastHttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.user_id, self.headers = new_identity(self.environment)

    @task(3)
    def browse(self) -> None:
        opts = self.environment.parsed_options
        with self.client.get(f"/v1/campaigns/{opts.campaign}", name="/v1/campaigns/[id]",
                             catch_response=True) as resp:
            judge(self.environment, resp, (200,))

    @task(2)
    def buy(self) -> None:
        opts = self.environment.parsed_options
        with self.client.post(f"/v1/campaigns/{opts.campaign}/claims",
                              json={"sku": opts.sku, "qty": 1}, headers=self.headers,
                              name="/v1/campaigns/[id]/claims", catch_response=True) as resp:
            if judge(self.environment, resp, (201,)) != "ok":
                return
            claim_id = resp.json()["claim_id"]
        with self.client.get(f"/v1/claims/{claim_id}", headers=self.headers,
                             name="/v1/claims/[id]", catch_response=True) as resp:
            judge(self.environment, resp, (200,))
        action = "confirm" if random.random() < 0.6 else "cancel"
        with self.client.post(f"/v1/claims/{claim_id}/{action}", headers=self.headers,
                              name=f"/v1/claims/[id]/{action}", catch_response=True) as resp:
            judge(self.environment, resp, (200,))
