"""Coupon rush: a crowd claims coupons from a drop; some redeem them at a till.

Each simulated person claims a coupon of the drop (`--sku` is the template),
looks at their wallet, and with `--redeem-ratio` hands the code to a
merchant, who redeems it for an order. Expected refusals (sold out, the
budget spent, over a limit) count as successes. With --create-campaign the
campaign is created as a coupon drop (`--stock` coupons, `--per-user`), and a
merchant is registered through the admin API for the redemptions:

    locust -f loadtest/coupon_rush.py --headless -u 500 -r 100 -t 30s \\
        --host http://127.0.0.1:8000 --create-campaign
"""

import random
from typing import Any

import scenario_kit
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from scenario_kit import judge, new_identity

MERCHANT: dict[str, str] = {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--redeem-ratio", type=float, default=0.5,
                        help="share of claimed coupons redeemed at once")
    parser.add_argument("--merchant-token", default="",
                        help="redeem as this merchant (else one is registered at start)")


def _as_drop(spec: dict[str, Any], opts: Any) -> None:
    """--create-campaign makes this scenario's campaign a drop of one fixed_off template."""
    spec["skus"][0]["price"] = 0
    spec["coupons"] = {"templates": {opts.sku: {"kind": "fixed_off", "face_value": 500,
                                                "valid_days": 30}}}


scenario_kit.SPEC_HOOKS.append(_as_drop)


def _merchant(environment: Environment) -> None:
    opts = environment.parsed_options
    if opts.merchant_token:
        MERCHANT["Authorization"] = f"Bearer {opts.merchant_token}"
        return
    answer = scenario_kit.admin_call(environment, "PUT", "merchants/lt-merchant",
                                     {"name": "locust till"})
    MERCHANT["Authorization"] = f"Bearer {answer['token']}"


scenario_kit.SETUP_STEPS.append(_merchant)


class Claimant(FastHttpUser):
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.user_id, self.headers = new_identity(self.environment)

    @task
    def claim_and_maybe_redeem(self) -> None:
        opts = self.environment.parsed_options
        with self.client.post(f"/v1/campaigns/{opts.campaign}/coupons",
                              json={"sku": opts.sku}, headers=self.headers,
                              name="/v1/campaigns/[id]/coupons", catch_response=True) as resp:
            if judge(self.environment, resp, (201,)) != "ok":
                return
            code = resp.json()["coupons"][0]["code"]
        with self.client.get("/v1/me/coupons", headers=self.headers, name="/v1/me/coupons",
                             catch_response=True) as resp:
            judge(self.environment, resp, (200,))
        if not MERCHANT or random.random() >= opts.redeem_ratio:
            return
        order = {"code": code, "order_id": f"{self.user_id}-{random.getrandbits(32)}",
                 "order_amount": 3000}
        with self.client.post("/v1/redemptions", json=order, headers=MERCHANT,
                              name="/v1/redemptions", catch_response=True) as resp:
            judge(self.environment, resp, (201,))
