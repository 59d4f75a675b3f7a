"""The Python client (stampede.client) against a real `stampede serve`: the waiting
room, a challenge solved, a claim and its confirmation; one hold however many
times and however concurrently an intent is sent; 429 retried after Retry-After;
coupons, the till code and a gift; and no answer at all, retried then raised."""

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stampede.client import AsyncClient, Client, RetryPolicy, StampedeError
from stampede.runtime.ports import free_port
from tests.frontend.shop import admin, at, put_campaign, sku_stats
from tests.system.service import Service

ROOT = Path(__file__).resolve().parents[2]
BOX_KEY = "box-office-key-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("client"),
                  env={"STAMPEDE_CHANNEL_KEYS": f"box={BOX_KEY}"})
    try:
        yield svc
    finally:
        svc.kill()
    assert "Traceback" not in svc.output()


def test_sync_client_queues_solves_claims_and_confirms(service: Service) -> None:
    put_campaign(service, "queued", qty=3, opens_in_s=-1,
                 waiting_room={"rate_per_s": 5},
                 throttle={"risk": [{"signal": "account_age_s", "action": "challenge",
                                     "below": 3600}]})
    new_account = {"X-User-Id": "nia", "X-Account-Created": str(int(time.time()))}
    with Client(service.url, headers=new_account) as shop:
        ticket = shop.wait_for_admission("queued", min_s=0.1)
        assert ticket.status == "admitted" and shop.admission["queued"]
        hold = shop.claim("queued", "tee")
        assert hold.status == "held" and hold.expires_at.tzinfo is not None
        again = shop.claim("queued", "tee")  # the same intent: the same hold
        assert again.claim_id == hold.claim_id
        assert shop.confirm(hold.claim_id).status == "confirmed"
    stats = sku_stats(service, "queued")
    assert (stats["sold"], stats["held"], stats["available"]) == (1, 0, 2)
    _, body = admin(service, "GET", "/admin/v1/campaigns/queued/stats")
    assert body["claims_by_outcome"]["challenge_required"] == 1


async def test_one_intent_sent_concurrently_makes_one_hold(service: Service) -> None:
    put_campaign(service, "crowd", qty=50)
    retried: list[int] = []
    async with AsyncClient(service.url, headers={"X-User-Id": "omar"},
                           on_retry=lambda n, wait, err: retried.append(err.status)) as shop:
        holds = await asyncio.gather(*(shop.claim("crowd", "tee") for _ in range(12)))
    assert len({h.claim_id for h in holds}) == 1
    assert set(retried) <= {409}  # "still in flight", then the first answer replayed
    assert sku_stats(service, "crowd")["held"] == 1


async def test_429_is_retried_after_retry_after(service: Service) -> None:
    put_campaign(service, "paced-py", qty=10, limits={"per_user": 10},
                 throttle={"user": {"per_s": 1, "burst": 1}})
    waits: list[tuple[int, float, float | None]] = []
    async with AsyncClient(service.url, headers={"X-User-Id": "pia"},
                           on_retry=lambda n, wait, err: waits.append(
                               (err.status, wait, err.retry_after_s))) as shop:
        first = await shop.claim("paced-py", "tee", 1)
        second = await shop.claim("paced-py", "tee", 2)
        strict = AsyncClient(service.url, headers={"X-User-Id": "pia"},
                             retry=RetryPolicy(attempts=1))
        with pytest.raises(StampedeError) as refused:
            await strict.claim("paced-py", "tee", 3)
        await strict.close()
    assert first.claim_id != second.claim_id
    assert waits and all(status == 429 and after is not None and wait >= after
                         for status, wait, after in waits)
    assert refused.value.code == "throttled" and refused.value.retryable
    assert refused.value.request_id


def test_coupons_wallet_till_code_and_a_gift(service: Service) -> None:
    opens = at(-60)
    status, body = admin(service, "PUT", "/admin/v1/campaigns/gifts", {
        "name": "Gifts", "opens_at": opens, "closes_at": at(3600),
        "skus": [{"sku": "five", "price": 0, "waves": [{"at": opens, "qty": 10}]}],
        "coupons": {"templates": {"five": {"kind": "fixed_off", "face_value": 500,
                                           "valid_days": 30, "transferable": True}}}})
    assert status == 201, body
    with Client(service.url, headers={"X-User-Id": "gus"}) as giver, \
            Client(service.url, headers={"X-User-Id": "hal"}) as friend:
        claimed = giver.claim_coupon("gifts", "five")
        coupon = claimed.coupons[0]
        assert [c.coupon_id for c in giver.wallet().coupons] == [coupon.coupon_id]
        assert giver.till_code(coupon.coupon_id).code
        offer = giver.gift(coupon.coupon_id)
        assert friend.accept_gift(offer.transfer_token).coupon_id == coupon.coupon_id
        assert [c.coupon_id for c in friend.wallet("active").coupons] == [coupon.coupon_id]
        with pytest.raises(StampedeError) as gone:
            giver.till_code(coupon.coupon_id)
        assert gone.value.status in (404, 409)


def test_no_answer_is_retried_then_raised() -> None:
    tries: list[str] = []
    with Client(f"http://127.0.0.1:{free_port()}", headers={"X-User-Id": "ivy"},
                retry=RetryPolicy(attempts=3, base_s=0.01),
                on_retry=lambda n, wait, err: tries.append(err.code)) as shop:
        with pytest.raises(StampedeError) as failed:
            shop.claim("any", "tee")
    assert failed.value.status == 0 and failed.value.code == "network"
    assert tries == ["network", "network"]


def test_the_client_rush_load_test_sells_exactly_the_stock(service: Service) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "loadtest" / "client_rush.py"), "--host", service.url,
         "--admin-url", service.admin_url, "--admin-token", service.admin_token(),
         "--campaign", "client-rush", "--shoppers", "40", "--stock", "10"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["outcomes"] == {"confirmed": 10, "sold_out": 30}, report
    assert sku_stats(service, "client-rush")["sold"] == 10


def test_a_bundle_claim_through_the_client(service: Service) -> None:
    put_campaign(service, "packs", qty=3, skus=[
        {"sku": "tee", "price": 2500, "waves": [{"at": at(-60), "qty": 3}]},
        {"sku": "cap", "price": 900, "waves": [{"at": at(-60), "qty": 3}]}],
        bundles={"kit": {"lines": [{"sku": "tee"}, {"sku": "cap"}]}})
    with Client(service.url, headers={"X-User-Id": "kim"}) as shop:
        kit = shop.claim_bundle("packs", bundle="kit")
        assert kit.bundle == "kit" and kit.price == 3400 and kit.lines
        assert shop.claim_bundle("packs", bundle="kit").claim_id == kit.claim_id  # one intent
        assert {x.status for x in shop.confirm(kit.claim_id).lines or ()} == {"confirmed"}
    with Client(service.url, headers={"X-User-Id": "lee"}) as shop:
        with pytest.raises(StampedeError) as err:
            shop.claim_bundle("packs", lines=[("tee", 1), ("tee", 1)])
        assert err.value.status == 400 and "lines[1].sku" in str(err.value)


def test_a_channel_key_claims_from_its_allocation(service: Service) -> None:
    """`channel_key` goes with sale claims (X-Channel-Key): a box office's claims take the
    units its allocation reserves, which a claim without the key cannot."""
    put_campaign(service, "boxed", qty=4, limits={"per_user": 4}, skus=[
        {"sku": "tee", "price": 2500, "waves": [{"at": at(-60), "qty": 4}],
         "allocations": [{"name": "box", "qty": 4, "channels": ["box"]}]},
        {"sku": "cap", "price": 900, "waves": [{"at": at(-60), "qty": 2}],
         "allocations": [{"name": "box", "qty": 2, "channels": ["box"]}]}])
    with Client(service.url, headers={"X-User-Id": "web"}) as shop:
        with pytest.raises(StampedeError) as err:
            shop.claim("boxed", "tee")
        assert err.value.code == "sold_out"
    with Client(service.url, headers={"X-User-Id": "bea"}, channel_key=BOX_KEY) as box:
        hold = box.claim("boxed", "tee", 1)
        assert box.confirm(hold.claim_id).status == "confirmed"
        kit = box.claim_bundle("boxed", lines=[("tee", 1), ("cap", 1)])
        assert kit.lines and {x.status for x in kit.lines} == {"held"}
    with Client(service.url, headers={"X-User-Id": "bea"}, channel_key="x" * 20,
                retry=RetryPolicy(attempts=1)) as forged:
        with pytest.raises(StampedeError) as err:
            forged.claim("boxed", "tee")
        assert err.value.code == "invalid_channel_key"
    status, stats = admin(service, "GET", "/admin/v1/campaigns/boxed/stats")
    assert status == 200, stats
    assert {s["sku"]: s["allocations"][0]["reserved"] for s in stats["skus"]} == \
        {"tee": 2, "cap": 1}
