"""The persister's CPU per bundle claim held, this checkout beside another, in one run.

A bundle's hold is written as its code writes it (bench/bundle_fill.py, run against
each code: the ticket + merch bundle, both lines with a price step, the ticket's with
an allocation, every claimant a person), then drained into a fresh store by that
code's persister (bench/persister_drain.py, its own process), --rounds times per
code and store, interleaved. Shown: events per bundle, and the persister's process
CPU per bundle (the median of the rounds; for PostgreSQL the server's beside it).

    python -m bench.persister_bundles [--bundles 5000] [--rounds 3] [--compare PATH]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from bench.bench_persister import REPO, Stores, _env, postgres_or_none
from stampede.runtime.valkey import EmbeddedValkey
from stampede.state.keys import events_key

console = Console()


async def fill(url: str, code: Path, cid: str, bundles: int, tmp: Path) -> tuple[bytes, int]:
    """The stream of `bundles` bundle claims as `code` writes it, and its DUMP."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bundle_fill.py"), url,
                          str(tmp), cid, str(bundles)], env=_env(code, url, "", tmp),
                         check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(r["code"]).resolve() == code.resolve(), (r["code"], code)
    redis = Redis.from_url(url)  # bytes: a DUMP is not text
    try:
        dump = await redis.dump(events_key(cid))
        await redis.delete(events_key(cid))
    finally:
        await redis.aclose()
    assert isinstance(dump, bytes)
    return dump, int(r["events"])


async def drain(url: str, stores: Stores, kind: str, code: Path, cid: str,
                stream: tuple[bytes, int], tmp: Path) -> tuple[float, float]:
    """(persister CPU s, store server CPU s) to drain the stream with `code`."""
    dump, total = stream
    redis = Redis.from_url(url)
    try:  # only this stream: every drain starts from a copy of it, no group yet
        for key in await redis.keys("*:events"):
            await redis.delete(key)
        await redis.restore(events_key(cid), 0, dump, replace=True)
    finally:
        await redis.aclose()
    store_url = await stores.fresh(kind)
    server = stores.server_cpu(kind)
    out = subprocess.run([sys.executable, str(REPO / "bench" / "persister_drain.py"),
                          url, store_url, str(tmp)], env=_env(code, url, store_url, tmp),
                         check=True, capture_output=True, text=True)
    server = stores.server_cpu(kind) - server
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["events"] == total, (r, total)
    return float(r["cpu_s"]), server


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, Any]]:
    codes = {"this checkout": REPO} | ({"compared": args.compare} if args.compare else {})
    server = EmbeddedValkey(tmp)
    url = server.start()
    out: dict[str, dict[str, Any]] = {}
    try:
        with postgres_or_none() as pg:
            stores = Stores(tmp, pg)
            streams = {}
            for n, (name, code) in enumerate(codes.items()):
                console.log(f"{name}: {args.bundles:,} bundle claims")
                streams[name] = await fill(url, code, f"bundles{n}", args.bundles, tmp)
            for kind in ["sqlite"] + (["postgresql"] if pg else []):
                cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in codes}
                for i in range(args.rounds):
                    for n, (name, code) in enumerate(codes.items()):
                        console.log(f"{kind} round {i + 1}/{args.rounds}: {name}")
                        cpu[name].append(await drain(url, stores, kind, code,
                                                     f"bundles{n}", streams[name], tmp))
                for name in codes:
                    per = args.bundles / 1e6
                    out[f"{kind}: {name}"] = {
                        "events_per_bundle": (streams[name][1] - 1) / args.bundles,
                        "cpu_us_per_bundle": statistics.median(c for c, _ in cpu[name]) / per,
                        "server_us_per_bundle":
                            statistics.median(s for _, s in cpu[name]) / per}
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundles", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another worktree's code, e.g. /work/main")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = uvloop.run(run(args, Path(tmp)))
    table = Table(title=f"persister per bundle claim held ({args.bundles:,} bundles)")
    for col in ("store: code", "events/bundle", "persister CPU µs/bundle",
                "server CPU µs/bundle"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(name, f"{r['events_per_bundle']:.2f}", f"{r['cpu_us_per_bundle']:.0f}",
                      f"{r['server_us_per_bundle']:.0f}" if r["server_us_per_bundle"] else "-")
    console.print(table)
    for kind in ("sqlite", "postgresql"):
        this, other = results.get(f"{kind}: this checkout"), results.get(f"{kind}: compared")
        if this and other:
            console.print(f"{kind}: this checkout / compared = "
                          f"{this['cpu_us_per_bundle'] / other['cpu_us_per_bundle']:.2f} "
                          f"in persister CPU per bundle")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
