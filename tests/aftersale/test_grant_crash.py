"""A crash between a check-in (or a confirm) and its grant: kill -9 of the whole service.

The drop is fenced first (straight in the embedded Valkey), so every check-in
is admitted in the sale's slot while its grant, in the drop's, is refused
and stays in the outbox: the kill is certain to fall between the two steps.
More check-ins are in flight when the service is killed (SIGKILL; Valkey,
its child, dies with it; `appendfsync always` loses no answered write). On
restart the drop is reopened and the sweeper grants what was pending: every
ticket checked in ends with exactly one pack, none without a check-in.
"""

import json
import os
import subprocess
import threading
import time
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Any

import msgspec
import redis

from stampede.state import keys
from tests.aftersale.helpers import sale_spec
from tests.aftersale.test_grants import pack_drop
from tests.system.service import STAMPEDE, Service, http, wait_for

# The killed persister's unacknowledged entries are taken over by the restarted one
# once idle this long (30 s by default, checked every half of it: on a loaded machine
# that alone outlasted the wait for the store below).
ENV = {"STAMPEDE_APPENDFSYNC": "always", "STAMPEDE_COUPON_KEYS": "A:crash-test-key-0123456789",
       "STAMPEDE_PERSIST_CLAIM_IDLE_MS": "500"}
SLOW_S = 90
"""The longest wait for what the restarted service does by itself (a loaded machine)."""
TICKETS = 40


def _call(url: str, token: str | None = None, body: Any = None, user: str | None = None,
          method: str = "POST") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if user:
        headers["X-User-Id"] = user
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _valkey(svc: Service) -> "redis.Redis[str]":
    return redis.Redis(unix_socket_path=str(svc.data_dir / "valkey" / "valkey.sock"),
                       decode_responses=True)


def test_kill_9_between_check_in_and_grant_ends_with_one_pack_each(tmp_path: Path) -> None:
    svc = Service(tmp_path, ENV)
    admin = svc.admin_token()
    try:
        for cid, spec in (("fans", pack_drop(stock=1000)),
                          ("gig", sale_spec(stock=TICKETS, per_user=None,
                                            tickets={"venue": "arena"},
                                            on_checkin={"drop": "fans", "sku": "welcome"}))):
            status, _ = _call(f"{svc.admin_url}/admin/v1/campaigns/{cid}", admin,
                              msgspec.to_builtins(spec), method="PUT")
            assert status == 201
        _, scanner = _call(f"{svc.admin_url}/admin/v1/scanners/door", admin,
                           {"venue": "arena", "gate": "door"}, method="PUT")
        codes = []
        for i in range(TICKETS):
            _, claim = _call(f"{svc.url}/v1/campaigns/gig/claims", body={"sku": "tee"},
                             user=f"t{i}")
            assert _call(f"{svc.url}/v1/claims/{claim['claim_id']}/confirm",
                         user=f"t{i}")[0] == 200
            _, mine = _call(f"{svc.url}/v1/me/tickets?campaign=gig", user=f"t{i}",
                            method="GET")
            codes.append(mine["tickets"][0]["code"])
        valkey = _valkey(svc)
        valkey.hset(keys.campaign_keys("fans").meta, "fenced", "1")  # grants wait
        first = codes[:TICKETS // 2]
        for code in first:
            status, verdict = _call(f"{svc.url}/v1/checkins", scanner["token"], {"code": code})
            assert (status, verdict["verdict"]) == (200, "admitted")
        assert valkey.hlen(keys.outbox_key("gig")) == len(first)
        valkey.close()

        # The rest in flight from 8 threads while the service is killed.
        answered: list[str] = []

        def scan(part: list[str]) -> None:
            for code in part:
                try:
                    status, verdict = _call(f"{svc.url}/v1/checkins", scanner["token"],
                                            {"code": code})
                    if status == 200:
                        answered.append(verdict["verdict"])
                except (OSError, HTTPException, ValueError):
                    return  # cut off by the kill: a reset, a short read, half a body
        rest = codes[TICKETS // 2:]
        threads = [threading.Thread(target=scan, args=(rest[i::8],)) for i in range(8)]
        for th in threads:
            th.start()
        time.sleep(0.05)
        svc.kill()  # SIGKILL: no drain, no shutdown hook
        for th in threads:
            th.join(15)
    finally:
        svc.kill()

    svc = Service(tmp_path, ENV)
    try:
        valkey = _valkey(svc)
        assert valkey.hlen(keys.outbox_key("gig")) >= len(first)  # all still pending
        valkey.hset(keys.campaign_keys("fans").meta, "fenced", "0")  # the drop reopens
        admitted = int(sum(int(v) for v in valkey.hgetall(keys.checkin_counts_key("gig"))
                           .values()))
        assert admitted >= len(first) + answered.count("admitted")
        assert wait_for(lambda: valkey.hlen(keys.outbox_key("gig")) == 0, SLOW_S)
        for code in first:  # scanned again after the restart: nothing more is granted
            status, verdict = _call(f"{svc.url}/v1/checkins", scanner["token"],
                                    {"code": code})
            assert (status, verdict["verdict"]) == (200, "checked_in")
        checked_in = {t for t in valkey.hkeys(keys.tickets_key("gig"))}
        for i in range(TICKETS):
            status, wallet = _call(f"{svc.url}/v1/me/coupons", user=f"t{i}", method="GET")
            assert status == 200
            ticket = codes[i].rsplit(".", 1)[0]
            expected = 2 if ticket in checked_in else 0  # one pack of two coupons, or none
            assert len(wallet["coupons"]) == expected, (i, wallet)
        assert len(checked_in) == admitted
        assert http(f"{svc.url}/readyz")[0] == 200
        valkey.close()
        assert wait_for(lambda: _persisted(svc), SLOW_S), _LAST_CHECK
        svc.terminate()
    finally:
        svc.kill()
    # `stampede audit` over the store: one pack per check-in, nothing else wrong.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    done = subprocess.run([STAMPEDE, "audit"], env={**env, "STAMPEDE_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert report["campaigns"]["gig"]["grants"] == {"checkins": admitted, "granted": admitted}


_LAST_CHECK: list[str] = []


def _persisted(svc: Service) -> bool:
    """Every event of both campaigns is in the store (`stampede check` says so)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    done = subprocess.run([STAMPEDE, "check", "--max-lag-s", "0"],
                          env={**env, "STAMPEDE_DATA_DIR": str(svc.data_dir)},
                          capture_output=True, text=True, timeout=30)
    _LAST_CHECK[:] = [done.stdout + done.stderr]
    return done.returncode == 0


def test_kill_9_between_confirm_and_grant_ends_with_one_pack_each(tmp_path: Path) -> None:
    """The same for a sale's on_confirm: confirms admitted while the drop is fenced,
    more in flight at the kill; after the restart every confirmed claim's buyer has
    exactly one pack, and the audit agrees."""
    svc = Service(tmp_path, ENV)
    admin = svc.admin_token()
    claims: list[tuple[str, str]] = []
    try:
        for cid, spec in (("fans", pack_drop(stock=1000)),
                          ("shop", sale_spec(stock=TICKETS, per_user=None,
                                             on_confirm={"drop": "fans", "sku": "welcome"}))):
            status, _ = _call(f"{svc.admin_url}/admin/v1/campaigns/{cid}", admin,
                              msgspec.to_builtins(spec), method="PUT")
            assert status == 201
        for i in range(TICKETS):
            _, claim = _call(f"{svc.url}/v1/campaigns/shop/claims", body={"sku": "tee"},
                             user=f"b{i}")
            claims.append((f"b{i}", claim["claim_id"]))
        valkey = _valkey(svc)
        valkey.hset(keys.campaign_keys("fans").meta, "fenced", "1")  # grants wait
        first = claims[:TICKETS // 2]
        for user, claim_id in first:
            assert _call(f"{svc.url}/v1/claims/{claim_id}/confirm", user=user)[0] == 200
        assert valkey.hlen(keys.outbox_key("shop")) == len(first)
        valkey.close()

        def confirm(part: list[tuple[str, str]]) -> None:
            for user, claim_id in part:
                try:
                    _call(f"{svc.url}/v1/claims/{claim_id}/confirm", user=user)
                except (OSError, HTTPException, ValueError):
                    return  # cut off by the kill: a reset, a short read, half a body
        rest = claims[TICKETS // 2:]
        threads = [threading.Thread(target=confirm, args=(rest[i::8],)) for i in range(8)]
        for th in threads:
            th.start()
        time.sleep(0.05)
        svc.kill()
        for th in threads:
            th.join(15)
    finally:
        svc.kill()

    svc = Service(tmp_path, ENV)
    try:
        valkey = _valkey(svc)
        assert valkey.hlen(keys.outbox_key("shop")) >= len(first)
        valkey.hset(keys.campaign_keys("fans").meta, "fenced", "0")
        assert wait_for(lambda: valkey.hlen(keys.outbox_key("shop")) == 0, SLOW_S)
        for user, claim_id in first:  # a confirm retried after the restart grants nothing
            assert _call(f"{svc.url}/v1/claims/{claim_id}/confirm", user=user)[0] == 200
        confirmed = 0
        for user, claim_id in claims:
            _, claim = _call(f"{svc.url}/v1/claims/{claim_id}", user=user, method="GET")
            _, wallet = _call(f"{svc.url}/v1/me/coupons", user=user, method="GET")
            expected = 2 if claim["status"] == "confirmed" else 0
            confirmed += claim["status"] == "confirmed"
            assert len(wallet["coupons"]) == expected, (user, claim, wallet)
        assert confirmed >= len(first)
        valkey.close()
        assert wait_for(lambda: _persisted(svc), SLOW_S), _LAST_CHECK
        svc.terminate()
    finally:
        svc.kill()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    done = subprocess.run([STAMPEDE, "audit"], env={**env, "STAMPEDE_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert report["campaigns"]["shop"]["confirm_grants"] == {"confirmed": confirmed,
                                                             "granted": confirmed}
