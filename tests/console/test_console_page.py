"""The ops console in a real headless Chromium against a real `stampede serve`.

Each test drives the page as an operator (or a viewer) would while the test
itself makes claims on the public API, and checks both what the page shows
and what the service did. Screenshots of the main pages are saved (see tests/browser.py).
"""

import asyncio
import csv
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import expect

from stampede.domain import shards
from tests.browser import browser, page, screenshot  # noqa: F401  (pytest fixtures)
from tests.system.service import STAMPEDE, Service, http

OPERATOR, VIEWER = "console-operator-token", "console-viewer-token"


def iso(delta_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


def sale_spec(name: str, stock: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "opens_at": iso(-60), "closes_at": iso(3600),
            "limits": {"per_user": 2, "max_per_claim": 2},
            "skus": [{"sku": "tee", "price": 1999, "waves": [{"at": iso(-30), "qty": stock}]},
                     {"sku": "cap", "price": 999,
                      "waves": [{"at": iso(-30), "qty": 5}, {"at": iso(1800), "qty": 20}]}],
            **extra}


def admin(service: Service, method: str, path: str, body: Any = None,
          token: str = OPERATOR) -> tuple[int, Any]:
    return http(f"{service.admin_url}{path}", method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/json"})


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    served = Service(tmp_path_factory.mktemp("console"), env={
        "STAMPEDE_ADMIN_TOKENS": f"operator:{OPERATOR},viewer:{VIEWER}",
        "STAMPEDE_CONSOLE_TICK_MS": "200"})
    try:
        assert admin(served, "PUT", "/admin/v1/campaigns/spring",
                     sale_spec("Spring sale", 200,
                               waitlist={"max_length": 100},
                               waiting_room=None))[0] == 201
        drop = {"name": "Welcome coupons", "opens_at": iso(-60), "closes_at": iso(3600),
                "skus": [{"sku": "five", "price": 0, "waves": [{"at": iso(-30), "qty": 100}]}],
                "coupons": {"templates": {"five": {"kind": "fixed_off", "face_value": 500,
                                                   "valid_days": 30}},
                            "budget": 20_000}}
        assert admin(served, "PUT", "/admin/v1/campaigns/welcome", drop)[0] == 201
        assert admin(served, "PUT", "/admin/v1/campaigns/queue",
                     sale_spec("Queued drop", 50, waiting_room={"rate_per_s": 50}))[0] == 201
        assert admin(served, "PUT", "/admin/v1/campaigns/launch",  # split over 3 shards
                     sale_spec("Sharded launch", 90, shards=3))[0] == 201
        yield served
    finally:
        served.kill()


@pytest_asyncio.fixture
async def shopper(service: Service) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(service.url) as session:
        yield session


async def claim(session: aiohttp.ClientSession, cid: str, user: str, sku: str = "tee"
                ) -> tuple[int, dict[str, Any]]:
    async with session.post(f"/v1/campaigns/{cid}/claims", json={"sku": sku},
                            headers={"X-User-Id": user}) as resp:
        return resp.status, await resp.json()


async def sign_in(page: Any, service: Service, token: str) -> None:  # noqa: F811
    await page.goto(service.admin_url + "/")
    await page.fill("#token", token)
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#campaign-spring")


def fact(page: Any, cid: str, name: str) -> Any:  # noqa: F811
    return page.locator(f"#campaign-{cid} [data-fact='{name}'] b")


def sku_cell(page: Any, cid: str, sku: str, column: int) -> Any:  # noqa: F811
    """A SKU row's cell: 1 released, 2 available, 3 held, 4 sold."""
    row = page.locator(f"#campaign-{cid} [data-testid=skus] tr", has_text=re.compile(f"^{sku}"))
    return row.locator("td").nth(column)


async def confirm(page: Any, expect: str) -> None:  # noqa: F811
    dialog = page.locator("#confirm")
    await dialog.wait_for(state="visible")
    assert expect in await page.locator("#confirm-text").inner_text()
    await page.click("#confirm-ok")


async def test_a_rush_moves_the_numbers_live(page: Any, service: Service,  # noqa: F811
                                             shopper: aiohttp.ClientSession) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await sign_in(page, service, OPERATOR)
    assert await page.locator("#who").inner_text() == "operator-0 (operator)"
    assert await sku_cell(page, "spring", "tee", 2).inner_text() == "200"
    results = await asyncio.gather(*(claim(shopper, "spring", f"rush-{i}") for i in range(60)))
    assert [s for s, _ in results].count(201) == 60
    # The page shows it without a reload: the live feed pushed it.
    await expect(fact(page, "spring", "claims ok")).to_have_text("60", timeout=5000)
    assert await sku_cell(page, "spring", "tee", 2).inner_text() == "140"
    assert await sku_cell(page, "spring", "tee", 3).inner_text() == "60"
    assert "in 1800" not in await page.locator("#campaign-spring").inner_text()
    assert "1 (20 units)" in await sku_cell(page, "spring", "cap", 5).inner_text()
    # Coupons issued while the page is open burn the drop's budget down.
    async with shopper.post("/v1/campaigns/welcome/coupons", json={"sku": "five"},
                            headers={"X-User-Id": "coupon-fan"}) as resp:
        assert resp.status == 201, await resp.text()
    await page.click("nav [data-tab=coupons]")
    await expect(page.locator("[data-drop=welcome]")).to_contain_text("19,500", timeout=5000)
    await screenshot(page, "console-coupons")
    await page.click("nav [data-tab=system]")
    assert "persister" in await page.locator("[data-testid=system]").inner_text()
    await screenshot(page, "console-system")
    await page.click("nav [data-tab=campaigns]")
    await screenshot(page, "console-campaigns")
    assert not errors, errors


async def test_pause_from_the_page_refuses_claims(page: Any, service: Service,  # noqa: F811
                                                  shopper: aiohttp.ClientSession) -> None:
    await sign_in(page, service, OPERATOR)
    await page.click("#campaign-spring [data-action=pause]")
    await confirm(page, "every claim is refused")
    await expect(page.locator("#campaign-spring [data-testid=state]")).to_have_text(
        "paused", timeout=5000)
    status, body = await claim(shopper, "spring", "late-comer")
    assert status == 409 and body["error"]["code"] == "paused", body
    # Cancelling the dialog changes nothing.
    await page.click("#campaign-spring [data-action=resume]")
    await page.click("#confirm button[value=cancel]")
    await asyncio.sleep(0.5)
    assert admin(service, "GET", "/admin/v1/campaigns/spring/stats")[1]["state"] == "paused"
    await page.click("#campaign-spring [data-action=resume]")
    await confirm(page, "claims are taken again")
    await expect(page.locator("#campaign-spring [data-testid=state]")).to_have_text(
        "open", timeout=5000)
    assert (await claim(shopper, "spring", "late-comer"))[0] == 201


async def test_add_stock_from_the_page(page: Any, service: Service) -> None:  # noqa: F811
    await sign_in(page, service, OPERATOR)
    before = admin(service, "GET", "/admin/v1/campaigns/spring/stats")[1]
    tee = next(s for s in before["skus"] if s["sku"] == "tee")
    form = page.locator("#campaign-spring [data-control=stock]")
    await form.locator("select[name=sku]").select_option("tee")
    await form.locator("input[name=delta]").fill("25")
    await form.locator("button[type=submit]").click()
    await confirm(page, "Add 25 units to tee")
    want = f"{tee['available'] + 25:,}"
    await expect(sku_cell(page, "spring", "tee", 2)).to_have_text(want, timeout=5000)
    after = admin(service, "GET", "/admin/v1/campaigns/spring/stats")[1]
    assert next(s for s in after["skus"] if s["sku"] == "tee")["available"] \
        == tee["available"] + 25
    # Removing more than is available is refused, and the page says why.
    await form.locator("input[name=delta]").fill("-100000")
    await form.locator("button[type=submit]").click()
    await confirm(page, "Remove 100000 available units")
    await page.wait_for_selector("#toast.bad")
    assert "Refused" in await page.locator("#toast").inner_text()


async def test_tune_limits_throttle_and_waiting_room(page: Any,  # noqa: F811
                                                     service: Service) -> None:
    await sign_in(page, service, OPERATOR)
    card = page.locator("#campaign-queue")
    assert not await page.locator("#campaign-spring [data-control=room]").is_visible()
    limits = card.locator("[data-control=limits]")
    await limits.locator("input[name=per_user]").fill("3")
    await limits.locator("button[type=submit]").click()
    await confirm(page, "3 units per user")
    await expect(card).to_contain_text("per user 3 ·", timeout=5000)
    throttle = card.locator("[data-control=throttle]")
    await throttle.locator("input[name=per_s]").fill("0.5")
    await throttle.locator("input[name=burst]").fill("2")
    await throttle.locator("button[type=submit]").click()
    await confirm(page, "to 0.5 claims/s (burst 2)")
    await expect(fact(page, "queue", "throttle")).to_have_text("user 0.5/s burst 2",
                                                               timeout=5000)
    room = card.locator("[data-control=room]")
    await room.locator("input[name=rate]").fill("7.5")
    await room.locator("button[type=submit]").click()
    await confirm(page, "Admit 7.5 users/s")
    await room.locator("[data-action=pause-queue]").click()
    await confirm(page, "nobody more is admitted")
    await expect(fact(page, "queue", "waiting room")).to_contain_text("7.5/s · PAUSED",
                                                                       timeout=5000)
    stats = admin(service, "GET", "/admin/v1/campaigns/queue/stats")[1]
    assert stats["waiting_room"]["rate_per_s"] == 7.5 and stats["waiting_room"]["paused"]
    assert stats["throttle"]["user"] == {"per_s": 0.5, "burst": 2}
    await screenshot(page, "console-controls")


async def test_a_viewer_sees_everything_and_cannot_act(page: Any,  # noqa: F811
                                                       service: Service) -> None:
    await sign_in(page, service, VIEWER)
    assert await page.locator("#read-only").is_visible()
    assert await page.locator("#campaign-spring [data-action=pause]").is_disabled()
    assert await page.locator("#campaign-spring [data-control=stock] button").is_disabled()
    await screenshot(page, "console-viewer")
    # The API refuses the viewer's token whatever the page does.
    status = await page.evaluate("""async () => (await fetch('/admin/v1/campaigns/spring', {
        method: 'PATCH', headers: {'Authorization': 'Bearer ' + sessionStorage.getItem(
        'stampede.console.token'), 'Content-Type': 'application/json'},
        body: JSON.stringify({state: 'closed'})})).status""")
    assert status == 403
    assert admin(service, "GET", "/admin/v1/campaigns/spring/stats")[1]["state"] != "closed"


async def test_a_bad_token_is_refused_and_kept_nowhere(page: Any,  # noqa: F811
                                                       service: Service) -> None:
    await page.goto(service.admin_url + "/")
    await page.fill("#token", "not-a-token")
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_contain_text("not an admin token")
    assert await page.evaluate("sessionStorage.length + localStorage.length") == 0


def _has_route(service: Service, path: str) -> bool:
    status, body = admin(service, "GET", path)
    return not (status == 404 and body.get("error", {}).get("code") == "not_found"
                and "no route" in body["error"]["message"])


async def test_look_a_user_up(page: Any, service: Service,  # noqa: F811
                              shopper: aiohttp.ClientSession) -> None:
    if not _has_route(service, "/admin/v1/users/nobody"):
        pytest.skip("GET /admin/v1/users/{user} (the query API) is not on this branch yet")
    assert (await claim(shopper, "spring", "looked-up"))[0] == 201
    await sign_in(page, service, OPERATOR)
    await page.click("nav [data-tab=lookup]")
    await page.select_option("#lookup-kind", "user")
    await page.fill("#lookup-id", "looked-up")
    await page.click("#lookup-form button[type=submit]")
    result = page.locator("[data-testid=lookup-result]")
    await result.wait_for()
    for _ in range(50):  # the store has it once the persister has written it
        if "spring" in await result.inner_text():
            break
        await page.click("#lookup-form button[type=submit]")
        await asyncio.sleep(0.2)
    assert "spring" in await result.inner_text()
    await screenshot(page, "console-lookup")
    # A claim id from that history: its record and the events that made it.
    claim_id = await result.locator("td", has_text=re.compile(r"^spring\.")).first.inner_text()
    await page.select_option("#lookup-kind", "claim")
    await page.fill("#lookup-id", claim_id)
    await page.click("#lookup-form button[type=submit]")
    await expect(result.locator("h2")).to_have_text(f"claim {claim_id}")
    await expect(result).to_contain_text("claim_held")
    # The audit log: who defined what.
    await page.select_option("#lookup-kind", "audit")
    await page.click("#lookup-form button[type=submit]")
    await expect(result.locator("h2")).to_have_text("Audit log")
    await expect(result).to_contain_text("operator-0")
    # An id the store does not hold is said so, not shown as an empty record.
    await page.select_option("#lookup-kind", "redemption")
    await page.fill("#lookup-id", "spring." + "0" * 20)
    await page.click("#lookup-form button[type=submit]")
    await expect(page.locator("#lookup-result .error")).to_contain_text("0" * 20)


async def test_export_claims_and_open_the_file(page: Any, service: Service,  # noqa: F811
                                               shopper: aiohttp.ClientSession,
                                               tmp_path: Path) -> None:
    if not _has_route(service, "/admin/v1/campaigns/spring/claims"):
        pytest.skip("GET /admin/v1/campaigns/{cid}/claims (the query API) is not on this "
                    "branch yet")
    made = {body["claim_id"] for status, body in await asyncio.gather(
        *(claim(shopper, "spring", f"export-{i}") for i in range(5))) if status == 201}
    assert len(made) == 5
    await sign_in(page, service, OPERATOR)
    await page.click("nav [data-tab=lookup]")
    await page.select_option("#export-campaign", "spring")
    await page.fill("#export-sku", "tee")
    rows: list[dict[str, str]] = []
    for attempt in range(50):  # the store has the claims once the persister wrote them
        async with page.expect_download() as waiting:
            await page.click("#export-form button[type=submit]")
        download = await waiting.value
        assert download.suggested_filename == "claims-spring.csv"
        path = tmp_path / f"claims-{attempt}.csv"
        await download.save_as(path)
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if made <= {r["claim_id"] for r in rows}:
            break
        await asyncio.sleep(0.2)
    assert made <= {r["claim_id"] for r in rows}
    assert {r["sku"] for r in rows} == {"tee"}  # the filter applied
    assert "Downloaded claims-spring.csv" in await page.locator("#export-result").inner_text()


def test_serve_points_at_the_console(service: Service) -> None:
    assert f"console      {service.admin_url}/" in service.output()
    help_text = subprocess.run([STAMPEDE, "serve", "--help"], capture_output=True, text=True,
                               env={**os.environ, "COLUMNS": "200"}, check=True).stdout
    assert "dashboard" in help_text and "http://HOST:ADMIN_PORT/" in help_text


async def test_a_sharded_campaign_is_one_card_with_shards_on_demand(
        page: Any, service: Service,  # noqa: F811
        shopper: aiohttp.ClientSession) -> None:
    await sign_in(page, service, OPERATOR)
    results = await asyncio.gather(*(claim(shopper, "launch", f"fan-{i}") for i in range(30)))
    assert [s for s, _ in results].count(201) == 30
    await expect(fact(page, "launch", "claims ok")).to_have_text("30", timeout=5000)
    # One card, its counters the shards' sums; no card of a shard of its own.
    cards = await page.locator("[data-campaign]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.campaign)")
    assert [c for c in cards if c.startswith("launch")] == ["launch"]
    assert await sku_cell(page, "launch", "tee", 2).inner_text() == "60"
    assert await sku_cell(page, "launch", "tee", 3).inner_text() == "30"
    shards = page.locator("#campaign-launch [data-testid=shards]")
    assert not await shards.locator("table").is_visible()
    await shards.locator("summary").click()
    rows = shards.locator("tbody tr")
    await expect(rows).to_have_count(6)  # 3 shards x 2 SKUs
    every = [await rows.nth(i).locator("td").all_inner_texts() for i in range(6)]
    cells = [c for c in every if c[2] == "tee"]
    assert [c[0] for c in cells] == ["0", "1", "2"] and cells[0][1] == "launch"
    assert sum(int(c[4]) for c in cells) == 60 and sum(int(c[5]) for c in cells) == 30
    assert sum(int(c[7]) for c in cells) == 30  # each claim counted on its user's shard
    stats = admin(service, "GET", "/admin/v1/campaigns/launch/stats")[1]
    assert next(s for s in stats["skus"] if s["sku"] == "tee")["available"] == 60
    assert not await page.locator("#campaign-spring [data-testid=shards]").is_visible()
    await screenshot(page, "console-shards")


async def test_the_throttle_form_of_a_sharded_campaign_patches_every_shard(
        page: Any, service: Service,  # noqa: F811
        shopper: aiohttp.ClientSession) -> None:
    await sign_in(page, service, OPERATOR)
    card = page.locator("#campaign-launch")
    throttle = card.locator("[data-control=throttle]")
    await throttle.locator("input[name=per_s]").fill("0.01")
    await throttle.locator("input[name=burst]").fill("1")
    await throttle.locator("button[type=submit]").click()
    await confirm(page, "to 0.01 claims/s (burst 1) from the next claim, on each of its 3 "
                        "shards in turn")
    await expect(fact(page, "launch", "throttle")).to_have_text("user 0.01/s burst 1",
                                                                timeout=5000)
    assert "Refused" not in await page.locator("#toast").inner_text()
    stats = admin(service, "GET", "/admin/v1/campaigns/launch/stats")[1]
    assert stats["throttle"]["user"] == {"per_s": 0.01, "burst": 1}
    # Every shard enforces it: users served by different shards are each throttled on
    # their second claim.
    users = {shards.shard_of_user(f"slow-{i}", 3): f"slow-{i}" for i in range(40)}
    assert sorted(users) == [0, 1, 2]
    for user in users.values():
        assert (await claim(shopper, "launch", user))[0] == 201
        assert (await claim(shopper, "launch", user))[0] == 429, user
    await screenshot(page, "console-shards-throttle")
