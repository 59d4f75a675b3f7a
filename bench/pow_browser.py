"""Proof-of-work solve time in a real headless Chromium, beside its baseline.

    python -m bench.pow_browser [--bits 16,18] [--tokens 3]

Baseline: /v1/pow-solver.js as front-ends used it (crypto.subtle.digest
awaited once per counter, on the page). New: the SDK's pow-worker.js (a
synchronous SHA-256 with the prefix's midstate, in a Web Worker). Both
solve the same challenge tokens at each difficulty; the solutions must be
equal (both find the smallest counter). Prints ms per solve, hashes per
second and the ratio; for difficulties not run (24 bits, the default
ChallengeSpec's max) the expected time is 2^bits hashes at the measured
rate. Takes under a minute at the defaults (16: one risk signal; 18: two).
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
from pathlib import Path

from aiohttp import web

from stampede.runtime.ports import free_port

STATIC = Path(__file__).resolve().parents[1] / "stampede" / "api" / "static"
PAGE = """<!doctype html><meta charset="utf-8"><script src="/pow-solver.js"></script>"""
RUN = """async ([token, bits]) => {
  const t0 = performance.now();
  const baseline = await solveChallenge(token, bits);
  const t1 = performance.now();
  const worker = new Worker('/sdk/pow-worker.js', { type: 'module' });
  const solved = await new Promise((resolve) => {
    worker.onmessage = ({ data }) => { if (data.solution !== undefined) resolve(data); };
    worker.postMessage({ token, difficulty: bits });
  });
  worker.terminate();
  return { baseline, baselineMs: t1 - t0, solution: solved.solution, workerMs: solved.ms };
}"""


async def serve(port: int) -> web.AppRunner:
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", page)
    app.router.add_static("/sdk", STATIC / "sdk")
    app.router.add_get("/pow-solver.js", lambda r: web.FileResponse(STATIC / "pow-solver.js"))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def main(bits: list[int], tokens: int) -> dict[str, object]:
    from playwright.async_api import async_playwright

    port = free_port()
    runner = await serve(port)
    results: dict[str, object] = {"cpus": os.cpu_count(), "runs": []}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                headless=True, args=["--no-sandbox"])
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            for b in bits:
                rows = []
                for i in range(tokens):
                    token = f"bench{i}.{os.urandom(32).hex()}"
                    out = await page.evaluate(RUN, [token, b])
                    assert out["baseline"] == out["solution"], out
                    rows.append(out)
                hashes = sum(int(r["solution"]) + 1 for r in rows)
                base_ms = sum(r["baselineMs"] for r in rows)
                new_ms = sum(r["workerMs"] for r in rows)
                results["runs"].append({  # type: ignore[attr-defined]
                    "bits": b, "solves": tokens,
                    "baseline_median_ms": round(statistics.median(
                        r["baselineMs"] for r in rows), 1),
                    "worker_median_ms": round(statistics.median(r["workerMs"] for r in rows), 1),
                    "baseline_hashes_per_s": round(hashes / base_ms * 1000),
                    "worker_hashes_per_s": round(hashes / new_ms * 1000),
                    "speedup": round(base_ms / new_ms, 2)})
            await browser.close()
    finally:
        await runner.cleanup()
    rate = results["runs"][-1]["worker_hashes_per_s"]  # type: ignore[index]
    base_rate = results["runs"][-1]["baseline_hashes_per_s"]  # type: ignore[index]
    results["expected_s_at_24_bits"] = {"worker": round(2 ** 24 / rate, 1),
                                        "baseline": round(2 ** 24 / base_rate, 1)}
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bits", default="16,18", help="difficulties, comma-separated")
    parser.add_argument("--tokens", type=int, default=3, help="challenges per difficulty")
    opts = parser.parse_args()
    print(json.dumps(asyncio.run(main([int(b) for b in opts.bits.split(",")], opts.tokens)),
                     indent=2))
