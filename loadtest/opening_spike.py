"""The opening spike: thousands of people arrive within seconds, one attempt each.

Each simulated person claims once; with a hold, they confirm (most) or
cancel (some) after a short pause, then leave. A LoadTestShape ramps to
--spike-users in --spike-seconds, holds for --hold-seconds, then stops.

    locust -f loadtest/opening_spike.py --headless --host http://127.0.0.1:8000 \\
        --create-campaign --stock 500
"""

import random
from typing import Any

from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from scenario_kit import judge, new_identity, run_time_over


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("opening spike")
    group.add_argument("--spike-users", type=int, default=2000)
    group.add_argument("--spike-seconds", type=float, default=5.0)
    group.add_argument("--hold-seconds", type=float, default=20.0)
    group.add_argument("--confirm-share", type=float, default=0.8)


class Shopper(FastHttpUser):
    """One person at the opening: one claim, then pay or give it back, then idle."""

    def on_start(self) -> None:
        self.user_id, self.headers = new_identity(self.environment)
        self.done = False

    def wait_time(self) -> float:
        return 3600.0 if self.done else random.uniform(0.5, 1.5)

    @task
    def attempt(self) -> None:
        if self.done:
            return
        self.done = True
        opts = self.environment.parsed_options
        with self.client.post(f"/v1/campaigns/{opts.campaign}/claims",
                              json={"sku": opts.sku, "qty": 1}, headers=self.headers,
                              name="/v1/campaigns/[id]/claims", catch_response=True) as resp:
            if judge(self.environment, resp, (201,)) != "ok":
                return
            claim_id = resp.json()["claim_id"]
        self._wait_a_little()
        action = "confirm" if random.random() < opts.confirm_share else "cancel"
        with self.client.post(f"/v1/claims/{claim_id}/{action}", headers=self.headers,
                              name=f"/v1/claims/[id]/{action}", catch_response=True) as resp:
            judge(self.environment, resp, (200,))

    def _wait_a_little(self) -> None:
        import gevent

        gevent.sleep(random.uniform(0.1, 0.5))


class Spike(LoadTestShape):
    """Ramp to the crowd in seconds, hold while holds settle, stop."""

    use_common_options = True  # --run-time ends it early (read in tick)

    def tick(self) -> tuple[int, float] | None:
        if run_time_over(self):
            return None
        opts = self.runner.environment.parsed_options if self.runner else None
        users = opts.spike_users if opts else 2000
        ramp = opts.spike_seconds if opts else 5.0
        hold = opts.hold_seconds if opts else 20.0
        t = self.get_run_time()
        if t > ramp + hold:
            return None
        return users, max(1.0, users / max(ramp, 0.1))
