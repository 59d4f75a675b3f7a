"""The gateway's own CPU per claim, without the network: this checkout against another.

    python -m bench.gateway_pipeline [--compare OTHER_CHECKOUT] [--claims 5000] [--rounds 3]

Runs the public app's whole request pipeline in-process (routing, the
middlewares, JWT auth, body decoding, the claim handler, the response object)
for `--claims` claims, with the engine's `claim` stubbed to answer a held
claim at once: what the gateway's Python costs per claim apart from aiohttp's
HTTP parsing and writing (the bare aiohttp row of bench.e2e), the engine's
batch (bench.engine_claims) and the event loop. Each claim carries a JWT:
"same token" (a client's second request: the verified-token cache answers) and
"new token" (every request a user never seen, as in bench.e2e). Each checkout
runs in its own process (its own code: PYTHONPATH), rounds alternating which
goes first; prints the median CPU µs per claim (process time, so a busy machine
moves it far less than wall time) and the ratio this / other.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
HERE = Path(__file__).resolve().parent.parent

# Uses only what both checkouts have: make_public_app, Authenticator, ClaimResult.
_RUN = """
import asyncio, gc, json, sys, time
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request
from stampede import Engine, Settings
from stampede.api.app import make_public_app
from stampede.api.auth import Authenticator, mint_user_token
from stampede.domain.engine import ClaimResult
from stampede.domain.models import ClaimView, from_ms
from stampede.outcomes import Outcome

SECRET = "bench-jwt-secret-0123456789-0123456789"
BODY = b'{"sku":"hot","qty":1}'


class _Protocol:  # what a request body's StreamReader asks of its protocol
    _reading_paused = False
    def resume_reading(self, **_): pass
    def pause_reading(self, **_): pass


class _Transport:  # the socket peer, for the client's network
    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 50000) if name == "peername" else default
    def is_closing(self): return False


async def main(n, same):
    engine = Engine.from_url("redis://127.0.0.1:1", Settings())
    held = ClaimResult(Outcome.OK, ClaimView(
        claim_id="bench.0123456789abcdef0123", campaign_id="bench", sku="hot", qty=1,
        status="held", expires_at=from_ms(1764672000000), price=0,
        created_at=from_ms(1764671400000)))
    async def claim(*args, **kwargs):
        return held
    engine.claim = claim
    app = make_public_app(engine, Authenticator(SECRET, False, ()), {"draining": False})
    app._set_loop(asyncio.get_running_loop())
    app.freeze()
    tokens = [mint_user_token(SECRET, f"user-{i}") for i in range(1 if same else n + 1)]
    protocol, transport = _Protocol(), _Transport()

    def request(i):
        body = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
        body.feed_data(BODY)
        body.feed_eof()
        return make_mocked_request(
            "POST", "/v1/campaigns/bench/claims", app=app, payload=body, transport=transport,
            headers={"Authorization": "Bearer " + tokens[0 if same else i],
                     "Content-Type": "application/json", "Host": "127.0.0.1:8000",
                     "Content-Length": str(len(BODY))})

    answer = await app._handle(request(n))
    assert answer.status == 201, (answer.status, answer.body)
    requests = [request(i) for i in range(n)]
    gc.collect()
    gc.freeze()  # the requests made ahead are not the pipeline's to collect
    started = time.process_time()
    for r in requests:
        await app._handle(r)
    return (time.process_time() - started) / n * 1e6

n = int(sys.argv[1])
print(json.dumps({mode: asyncio.run(main(n, mode == "same token"))
                  for mode in ("same token", "new token")}))
"""

MODES = ("same token", "new token")


def _round(checkout: Path, claims: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", _RUN, str(claims)], cwd=checkout, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{checkout}: the pipeline failed\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--claims", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    builds = {"this": HERE, **({"other": args.compare.resolve()} if args.compare else {})}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for i in range(args.rounds):
        order = list(builds) if i % 2 == 0 else list(builds)[::-1]
        for name in order:
            rows[name].append(_round(builds[name], args.claims))
            console.log(f"round {i} {name}: " + ", ".join(
                f"{m} {rows[name][-1][m]:.1f} µs" for m in MODES))
    table = Table(title=f"gateway pipeline, engine stubbed: CPU µs per claim, median of "
                        f"{args.rounds} rounds of {args.claims:,} claims")
    for col in ("mode", *builds, *(("this / other",) if args.compare else ())):
        table.add_column(col, justify="right")
    for mode in MODES:
        medians = {name: statistics.median(r[mode] for r in rs) for name, rs in rows.items()}
        table.add_row(mode, *(f"{v:.1f}" for v in medians.values()),
                      *((f"{medians['this'] / medians['other']:.2f}",) if args.compare else ()))
    console.print(table)


if __name__ == "__main__":
    main()
