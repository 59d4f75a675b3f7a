"""Humans against bots at an opening: who gets the stock, with protection off or on.

Humans (weight --human-weight) each claim once after a human think time,
each from their own device and network (sent as X-Forwarded-For: run the
server with STAMPEDE_TRUSTED_PROXIES=127.0.0.1/32 so it believes them);
they solve a proof-of-work challenge when asked and honour one short
Retry-After. Bots (weight --bot-weight) fire as fast as they can from a few
farms, each farm one network and two devices, rotating accounts; they solve
challenges too and ignore Retry-After.

--protection on PATCHes the campaign's throttle (the same rules as
bench/fairness.py) before the run; off turns it off. At the end the run
prints the share of the units each side took and the humans wrongly
refused, and exits non-zero above --max-bot-share or --max-human-refused.

    STAMPEDE_DEV_AUTH=1 STAMPEDE_TRUSTED_PROXIES=127.0.0.1/32 bin/serve &
    locust -f loadtest/humans_vs_bots.py --headless -u 600 -r 200 -t 20s \\
        --host http://127.0.0.1:8000 --create-campaign \\
        --stock 100 --per-user 1 --protection on
"""

import hashlib
import itertools
import random
import time
from collections import Counter
from typing import Any

import gevent
import scenario_kit
from locust import between, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from scenario_kit import error_code, judge, new_identity

DAY = 86_400
PROTECTION: dict[str, Any] = {
    "user": {"per_s": 0.5, "burst": 3},
    "device": {"per_s": 1, "burst": 5},
    "network": {"per_s": 20, "burst": 60},
    "accounts_per_device": {"challenge_above": 2, "reject_above": 3},
    "accounts_per_network": {"challenge_above": 15, "reject_above": 200},
    "risk": [{"signal": "account_age_s", "below": 7 * DAY, "action": "challenge"}],
    "challenge": {"base_bits": 12, "step_bits": 2, "max_bits": 16},
}
UNITS: Counter[str] = Counter()
HUMANS: Counter[str] = Counter()
_humans = itertools.count()
_bots = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("humans vs bots")
    group.add_argument("--protection", choices=("on", "off"), default="on")
    group.add_argument("--human-weight", type=int, default=20, help="humans per bot user")
    group.add_argument("--farms", type=int, default=3)
    group.add_argument("--bot-rps", type=float, default=50.0, help="requests/s per bot user")
    group.add_argument("--max-bot-share", type=float, default=1.0,
                       help="exit non-zero if bots take more than this share of units taken")
    group.add_argument("--max-human-refused", type=float, default=1.0,
                       help="exit non-zero if more than this share of humans is wrongly refused")


@events.init.add_listener
def _weights(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is not None:
        Human.weight = opts.human_weight


def _protect(environment: Environment) -> None:
    opts = environment.parsed_options
    throttle = PROTECTION if opts.protection == "on" else {"enabled": False}
    scenario_kit.admin_call(environment, "PATCH", f"campaigns/{opts.campaign}",
                            {"throttle": throttle}, ok=(200,))


scenario_kit.SETUP_STEPS.append(_protect)


@events.quitting.add_listener
def _verdict(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    taken = sum(UNITS.values())
    bot_share = UNITS["bots"] / taken if taken else 0.0
    humans = sum(HUMANS.values())
    refused = sum(n for code, n in HUMANS.items()
                  if code in ("throttled", "blocked", "challenge_required"))
    refused_share = refused / humans if humans else 0.0
    print(f"bots took {UNITS['bots']} of {taken} units ({bot_share:.1%}); humans wrongly "
          f"refused {refused} of {humans} ({refused_share:.2%}); humans: "
          + ", ".join(f"{k} {v}" for k, v in HUMANS.most_common()))
    if opts is not None and (bot_share > opts.max_bot_share
                             or refused_share > opts.max_human_refused):
        print("FAIL: unfair opening")
        environment.process_exit_code = 1


def solve(token: str, difficulty: int) -> str:
    """Hashcash: a counter such that sha256(token:counter) has `difficulty` zero bits."""
    prefix = f"{token}:".encode()
    for counter in itertools.count():
        digest = hashlib.sha256(prefix + str(counter).encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - difficulty) == 0:
            return str(counter)
        if counter % 2048 == 2047:
            gevent.sleep(0)  # let the other simulated users run
    raise AssertionError("unreachable")


def _challenge_headers(resp: Any) -> dict[str, str] | None:
    try:
        ch = resp.json()["error"]["challenge"]
    except (ValueError, KeyError, TypeError):
        return None
    return {"X-Challenge-Token": ch["token"],
            "X-Challenge-Solution": solve(ch["token"], int(ch["difficulty"]))}


class Human(FastHttpUser):
    """One person: arrives, thinks, claims once (solving a challenge if asked), leaves."""
    weight = 20
    wait_time = between(0.5, 2.5)

    def on_start(self) -> None:
        n = next(_humans)
        self.user_id, self.headers = new_identity(self.environment)
        young = random.random() < 0.1
        address = f"10.{n // 256 % 256}.{n % 256}.{random.randrange(1, 255)}"
        created = int(time.time()) - (3600 if young else 400 * DAY)
        self.headers |= {"X-Device-Id": f"human-{self.user_id}", "X-Forwarded-For": address,
                         "X-Account-Created": str(created)}
        self.done = False

    @task
    def attempt(self) -> None:
        if self.done:
            gevent.sleep(3600)
            return
        self.done = True
        gevent.sleep(random.uniform(0.3, 1.5))  # reading the page before the click
        opts = self.environment.parsed_options
        extra: dict[str, str] = {}
        outcome = "unreadable"
        for _ in range(3):
            with self.client.post(f"/v1/campaigns/{opts.campaign}/claims",
                                  json={"sku": opts.sku, "qty": 1},
                                  headers=self.headers | extra, catch_response=True,
                                  name="/v1/campaigns/[id]/claims (human)") as resp:
                outcome = judge(self.environment, resp, (201,))
                if outcome == "challenge_required":
                    extra = _challenge_headers(resp) or {}
                    continue
                if outcome == "throttled":
                    gevent.sleep(min(10.0, float(resp.headers.get("Retry-After", "1"))))
                    continue
                break
        HUMANS[outcome] += 1
        if outcome == "ok":
            UNITS["humans"] += 1


class Bot(FastHttpUser):
    """A scalper script: many accounts, few devices and networks, as fast as allowed."""
    weight = 1

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        n = next(_bots)
        self.farm = n % max(1, opts.farms)
        self.accounts = [new_identity(self.environment) for _ in range(200)]
        self.turn = 0

    def wait_time(self) -> float:
        return constant_throughput(self.environment.parsed_options.bot_rps)(self)

    @task
    def grab(self) -> None:
        if not self.accounts:
            gevent.sleep(1)
            return
        opts = self.environment.parsed_options
        self.turn += 1
        user, auth = self.accounts[self.turn % len(self.accounts)]
        headers = auth | {"X-Device-Id": f"farm{self.farm}-dev{self.turn % 2}",
                          "X-Forwarded-For": f"203.0.{self.farm}.{self.turn % 250 + 1}",
                          "X-Account-Created": str(int(time.time()) - DAY)}
        for _ in range(2):
            with self.client.post(f"/v1/campaigns/{opts.campaign}/claims",
                                  json={"sku": opts.sku, "qty": 1}, headers=headers,
                                  catch_response=True,
                                  name="/v1/campaigns/[id]/claims (bot)") as resp:
                # Every answer a bot gets is expected; only transport errors fail.
                if resp.status_code in (201, 403, 409, 429):
                    resp.success()
                code = "ok" if resp.status_code == 201 else error_code(resp.content)
                if code == "challenge_required":
                    extra = _challenge_headers(resp)
                    if extra:
                        headers |= extra
                        continue
                break
        if code == "ok":
            UNITS["bots"] += 1
        if code in ("ok", "limit_exceeded"):
            self.accounts = [a for a in self.accounts if a[0] != user]
