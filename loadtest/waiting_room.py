"""The waiting room: a crowd queues before and at the opening, is admitted at a pace, claims.

Each simulated person takes a ticket (`POST /v1/campaigns/{id}/queue`),
polls it (`GET .../queue/me`) about once a second until admitted, then
claims once with the admission token and pays (or gives the hold back).
A LoadTestShape ramps to --crowd people in --ramp-seconds and holds for
--hold-seconds. With --create-campaign the campaign gets a waiting room
that admits --admission-rate people per second (default 50).

    locust -f loadtest/waiting_room.py --headless --host http://127.0.0.1:8000 \\
        --create-campaign --crowd 2000 --stock 300

Refusals that are normal here: a claim without a turn (`admission_required`,
e.g. when the turn lapsed), and the sale's own (`sold_out`, ...).
"""

import random
from typing import Any

from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from scenario_kit import OUTCOMES, judge, new_identity, run_time_over


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("waiting room")
    group.add_argument("--crowd", type=int, default=2000, help="people who queue")
    group.add_argument("--ramp-seconds", type=float, default=5.0)
    group.add_argument("--hold-seconds", type=float, default=30.0)
    group.add_argument("--confirm-share", type=float, default=0.8)


@events.init.add_listener
def _default_rate(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is not None and opts.admission_rate <= 0:
        opts.admission_rate = 50.0  # this scenario is about the waiting room


class Queuer(FastHttpUser):
    """One person: ticket, poll until admitted, one claim, pay or give back, leave."""

    def on_start(self) -> None:
        self.user_id, self.headers = new_identity(self.environment)
        self.stage = "arrive"
        self.token: str | None = None

    def wait_time(self) -> float:
        if self.stage == "done":
            return 3600.0
        return random.uniform(0.8, 1.2) if self.stage == "waiting" else random.uniform(0.1, 0.3)

    @task
    def step(self) -> None:
        if self.stage == "arrive":
            self._take_ticket()
        elif self.stage == "waiting":
            self._poll()
        elif self.stage == "admitted":
            self._claim()

    @property
    def _base(self) -> str:
        return f"/v1/campaigns/{self.environment.parsed_options.campaign}"

    def _take_ticket(self) -> None:
        with self.client.post(f"{self._base}/queue", headers=self.headers,
                              name="/v1/campaigns/[id]/queue", catch_response=True) as resp:
            if judge(self.environment, resp, (200, 201)) != "ok":
                self.stage = "done"
                return
            self._read_ticket(resp.json())

    def _poll(self) -> None:
        with self.client.get(f"{self._base}/queue/me", headers=self.headers,
                             name="/v1/campaigns/[id]/queue/me", catch_response=True) as resp:
            if judge(self.environment, resp, (200,)) != "ok":
                self.stage = "done"
                return
            self._read_ticket(resp.json())

    def _read_ticket(self, ticket: dict[str, Any]) -> None:
        if ticket["status"] == "admitted" and ticket.get("admission_token"):
            self.token, self.stage = ticket["admission_token"], "admitted"
            OUTCOMES["admitted"] += 1
        elif ticket["status"] == "done":
            self.stage = "done"
        else:
            self.stage = "waiting"

    def _claim(self) -> None:
        self.stage = "done"
        opts = self.environment.parsed_options
        headers = {**self.headers, "X-Admission-Token": self.token or ""}
        with self.client.post(f"{self._base}/claims", json={"sku": opts.sku, "qty": 1},
                              headers=headers, name="/v1/campaigns/[id]/claims",
                              catch_response=True) as resp:
            if judge(self.environment, resp, (201,)) != "ok":
                return
            claim_id = resp.json()["claim_id"]
        action = "confirm" if random.random() < opts.confirm_share else "cancel"
        with self.client.post(f"/v1/claims/{claim_id}/{action}", headers=self.headers,
                              name=f"/v1/claims/[id]/{action}", catch_response=True) as resp:
            judge(self.environment, resp, (200,))


class Crowd(LoadTestShape):
    """Ramp to the crowd in seconds, hold while the queue drains, stop."""

    use_common_options = True  # --run-time ends it early (read in tick)

    def tick(self) -> tuple[int, float] | None:
        if run_time_over(self):
            return None
        opts = self.runner.environment.parsed_options if self.runner else None
        crowd = opts.crowd if opts else 2000
        ramp = opts.ramp_seconds if opts else 5.0
        hold = opts.hold_seconds if opts else 30.0
        if self.get_run_time() > ramp + hold:
            return None
        return crowd, max(1.0, crowd / max(ramp, 0.1))
