"""Two builds of `stampede serve` at the same fixed rate, round by round: CPU and latency.

    python -m bench.gateway_ab --compare OTHER_WORKTREE [--rate 500] [--seconds 4]
                               [--rounds 3] [--env STAMPEDE_DEV_AUTH=1]

bench.e2e's closed loop finds each target's peak, but on a shared machine the
peak moves with whatever else runs, and a service at a lower rate sends smaller
batches, so even its CPU per claim moves with it. Here both builds (this
worktree's `stampede` and `OTHER_WORKTREE/.venv/bin/stampede`) get the *same*
open-loop rate, alternately (A B A B ...), each a JWT user per request as in
bench.e2e: the CPU per claim by process (gateway, Valkey, the persister until
it has drained) and the latency percentiles are then comparable. Prints each
round and the medians with their ratios (this build / the other).
"""

import argparse
import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.table import Table

from bench import e2e, harness, loadgen

BODY = b'{"sku":"hot","qty":1}'


def _round(target: e2e.Target, rate: float, seconds: float, tag: str) -> dict[str, Any]:
    users = e2e._users(target, tag, int(seconds * rate * 1.1) + 100)
    before = harness.tree_cpu_by_role(target.roots)
    result = loadgen.run_open(target.url, rate=rate, duration=seconds, connections=128,
                              users=users, body=BODY, headers_for=target.headers_for,
                              user_header=target.user_header, workers=1, progress=False)
    after = harness.tree_cpu_by_role(target.roots)
    after.update({k: v for k, v in e2e._drained(target.roots).items()
                  if k in ("persister", "valkey")})
    ok = max(1, result.status_counts.get(201, 0))
    target.created += result.status_counts.get(201, 0)
    by_role = {k: (after[k] - before.get(k, 0.0)) * 1e6 / ok for k in after}
    return {"cpu_us": sum(by_role.values()), **{f"{k}_us": v for k, v in by_role.items()},
            "p50": result.latency_ms["p50"], "p99": result.latency_ms["p99"],
            "p99.9": result.latency_ms["p99.9"], "ok": result.status_counts.get(201, 0),
            "answers": sum(result.status_counts.values()),
            "check": target.check(target.created, 128)["ok"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for both services (e.g. STAMPEDE_DEV_AUTH=1)")
    args = parser.parse_args()
    harness.sigterm_as_exit()
    idle = harness.idle_fraction()
    e2e.console.print(f"machine {idle:.0%} idle before the run")
    env = dict(item.split("=", 1) for item in args.env)
    rows: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
    with ExitStack() as stack:
        targets = {
            "this": stack.enter_context(e2e.stampede(stack, "this", env)),
            "other": stack.enter_context(e2e.stampede(
                stack, "other", env, exe=args.compare / ".venv" / "bin" / "stampede")),
        }
        for i in range(args.rounds):
            for name in (("this", "other") if i % 2 == 0 else ("other", "this")):
                row = _round(targets[name], args.rate, args.seconds, f"r{i}{name}")
                rows[name].append(row)
                e2e.console.log(f"round {i} {name}: " + ", ".join(
                    f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in row.items()))
    table = Table(title=f"same open-loop rate {args.rate:,.0f}/s, {args.rounds} rounds of "
                        f"{args.seconds:g} s, medians (this / other)")
    for col in ("measure", "this", "other", "ratio"):
        table.add_column(col, justify="right")
    for key in ("cpu_us", "server_us", "valkey_us", "persister_us", "p50", "p99", "p99.9"):
        mine = statistics.median(r.get(key, 0.0) for r in rows["this"])
        theirs = statistics.median(r.get(key, 0.0) for r in rows["other"])
        table.add_row(key, f"{mine:.2f}", f"{theirs:.2f}",
                      f"{mine / theirs:.2f}" if theirs else "")
    e2e.console.print(table)
    checks = all(r["check"] for rs in rows.values() for r in rs)
    e2e.console.print(f"accounting checked after every round: {'ok' if checks else 'FAILED'}")


if __name__ == "__main__":
    main()
