"""The `stampede` command: serve, and tools around it.

A mistake of the user's (a bad setting, an unknown campaign, a wrong
option) ends in one line on stderr and exit code 2, never a traceback;
a service that cannot be reached, one line and exit code 1.
"""

import importlib.metadata
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any, NoReturn

import redis.exceptions
import sqlalchemy.exc
import typer
import uvloop
from prometheus_client import start_http_server
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click

from stampede import Settings, logs
from stampede.api.auth import mint_user_token
from stampede.domain import phases
from stampede.domain.config import checked
from stampede.errors import ConfigError, ServerError, UnavailableError, ValidationError
from stampede.metrics import RESTARTS
from stampede.runtime import credentials, persistence
from stampede.runtime.lock import lock_data_dir
from stampede.runtime.server import Listen, serve
from stampede.runtime.valkey import EmbeddedValkey, embedded_url
from stampede.runtime.valkey_cluster import LocalValkeyCluster
from stampede.runtime.workers import WorkerPool
from stampede.state import keys

app = typer.Typer(help="Stampede: rush-sale and claim engine.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
console = Console(stderr=True)

USAGE = 2
"""Exit code of a user's mistake (as click's own usage errors)."""
UNREACHABLE = 1
"""Exit code when Redis, the store or a port cannot be had."""


class UserError(Exception):
    """A mistake of the user's: printed as one line, exit code 2."""


def fail(message: str, code: int = USAGE) -> NoReturn:
    """One line on stderr (never wrapped), then exit."""
    sys.stderr.write(f"stampede: {' '.join(message.split())}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def _version(value: bool) -> None:
    if value:
        print(f"stampede {importlib.metadata.version('stampede')}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Stampede: rush-sale and claim engine."""


def _settings() -> Settings:
    try:
        return checked(Settings.from_env())
    except ConfigError as exc:
        fail(f"configuration error: {exc}")


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="public API port"),
    admin_port: int = typer.Option(8001, help="admin API and dashboard port (the ops console "
                                    "is at http://HOST:ADMIN_PORT/)"),
    workers: int = typer.Option(1, min=1, max=64, help="gateway processes sharing the ports"),
) -> None:
    """Run the public API, the admin API with the ops console (GET / of the admin port) and
    the hold sweeper."""
    settings = _settings()
    logs.configure()
    auth = credentials.authenticator(settings)
    valkey = None
    redis_url = settings.redis_url
    try:
        # Before anything else: a second serve must not touch the first one's Valkey.
        lock = lock_data_dir(settings.data_dir)
    except ServerError as exc:
        console.print(f"[red]cannot start:[/] {exc}")
        raise typer.Exit(1) from exc
    try:
        if redis_url is None:
            valkey = EmbeddedValkey(settings.data_dir, settings.appendfsync)
            redis_url = valkey.start()
        listen = Listen(host, port, admin_port)

        def banner() -> None:
            _print_banner(settings, listen, redis_url or "", valkey is not None, workers)

        if workers == 1:
            uvloop.run(serve(settings, redis_url, auth, listen, on_started=banner,
                             valkey=valkey))
        else:
            pool = WorkerPool(workers, host, port, admin_port, redis_url,
                              settings.data_dir / "metrics", settings.shutdown_grace_s,
                              valkey=valkey)
            banner()
            pool.run()
    except (ServerError, OSError) as exc:
        fail(f"cannot start: {exc}", UNREACHABLE)
    except KeyboardInterrupt:
        pass
    finally:
        if valkey is not None:
            valkey.stop()
        lock.close()
    console.print("stopped")


@app.command("worker", hidden=True)
def worker_command(index: int = typer.Option(...), host: str = typer.Option(...),
                   port: int = typer.Option(...), admin_port: int = typer.Option(...),
                   restarted: bool = typer.Option(False)) -> None:
    """One gateway process of `serve --workers N` (started by the master)."""
    settings = _settings()
    logs.configure()
    if restarted:
        RESTARTS.labels("worker").inc()
    if settings.redis_url is None:
        raise typer.Exit(2)
    listen = Listen(host, port, admin_port, reuse_port=True, housekeeping=index == 0)
    try:
        uvloop.run(serve(settings, settings.redis_url, credentials.authenticator(settings),
                         listen))
    except KeyboardInterrupt:
        pass


def _print_banner(settings: Settings, listen: Listen, redis_url: str, embedded: bool,
                  workers: int) -> None:
    where = "embedded Valkey" if embedded else \
        "Redis Cluster, found through the node" if settings.redis_cluster else "Redis"
    console.print(f"[bold]Stampede[/] is serving ({workers} worker{'s' * (workers > 1)})")
    console.print(f"  public API   http://{listen.host}:{listen.port}/v1  "
                  f"(docs: /docs, spec: /openapi.json)")
    console.print(f"  admin API    http://{listen.host}:{listen.admin_port}/admin/v1")
    console.print(f"  console      http://{listen.host}:{listen.admin_port}/  "
                  f"(sign in with an admin token)")
    console.print(f"  metrics      http://{listen.host}:{listen.admin_port}/metrics")
    console.print(f"  state        {where} at {redis_url}")
    if not settings.admin_tokens:
        console.print(f"  admin token  {settings.data_dir / 'admin.token'} (operator)")
    if settings.dev_auth:
        console.print("[bold yellow]  WARNING: STAMPEDE_DEV_AUTH=1 trusts the X-User-Id header. "
                      "Local trials and load tests only.[/]")
    else:
        console.print("  user tokens  `stampede token <user>` mints one for trials")
    console.print("  Ctrl-C stops the service and the Valkey it started")


@app.command("token")
def token_command(
    user: str,
    ttl_s: int = typer.Option(3600, min=1, help="lifetime in seconds"),
    created_at: int = typer.Option(None, min=0, help="the `created_at` claim: when the account "
                                   "was made, epoch seconds (the `account_age_s` risk signal)"),
    idh: str = typer.Option(None, help="the `idh` claim: the user's hashed real-person "
                            "identity (the `per_person` limit of a campaign or coupon "
                            "drop counts it)"),
    tiers: str = typer.Option(None, help="the `tiers` claim, comma-separated: the user's "
                              "audience tiers (presale access phases admit by them)"),
    channel: str = typer.Option(None, help="the `channel` claim: the sales channel the "
                                "token is for (a SKU's allocations for it serve it)"),
) -> None:
    """Print a user JWT signed with the service's secret (for trials and load tests)."""
    if not keys.valid_user_id(user):
        fail(f"{user!r} is not a valid user id")
    listed = [t.strip() for t in tiers.split(",")] if tiers else None
    try:
        phases.check_tiers(listed or [])
    except ValidationError as exc:
        fail(str(exc))
    if channel is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", channel):
        fail(f"{channel!r} is not a valid channel name")
    print(mint_user_token(credentials.jwt_secret(_settings()), user, ttl_s, created_at, idh,
                          listed, channel))


@app.command("admin-token")
def admin_token_command() -> None:
    """Print the first operator token the service accepts."""
    tokens = [t for t in credentials.admin_tokens(_settings()) if t.role.value == "operator"]
    if not tokens:
        fail("STAMPEDE_ADMIN_TOKENS names no operator token")
    print(tokens[0].token)


def _state_url(settings: Settings) -> str:
    """STAMPEDE_REDIS_URL, else the embedded Valkey a running `serve` started."""
    url = settings.redis_url or embedded_url(settings.data_dir)
    if not url:
        fail("no Redis: set STAMPEDE_REDIS_URL, or start `stampede serve` "
             f"(its embedded Valkey is found under {settings.data_dir})")
    return url


@app.command("persist")
def persist_command(
    drain: bool = typer.Option(False, help="persist what the streams hold now, then exit"),
    metrics_port: int = typer.Option(0, help="serve /metrics on this port (0: off)"),
) -> None:
    """Run the persister alone: event streams into the durable store (several may run)."""
    settings = _settings()
    _run_worker(metrics_port, persistence.run_persister(settings, _state_url(settings), drain))


@app.command("deliver")
def deliver_command(
    metrics_port: int = typer.Option(0, help="serve /metrics on this port (0: off)"),
) -> None:
    """Run the webhook delivery worker alone (with STAMPEDE_WEBHOOK_WORKER=0 for serve)."""
    _run_worker(metrics_port, persistence.run_deliverer(_settings()))


def _run_worker(metrics_port: int, work: Coroutine[Any, Any, None]) -> None:
    """A worker command's body: JSON logs, /metrics if asked, the work until Ctrl-C."""
    logs.configure()
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    try:
        uvloop.run(work)
    except KeyboardInterrupt:
        pass


@app.command("audit")
def audit_command(
    campaign: str = typer.Option(None, help="only this campaign"),
    users: bool = typer.Option(False, help="list every user's units"),
) -> None:
    """Recompute every campaign from the store alone; JSON summary; exit 1 on a violation,
    2 when there is nothing to audit (an unknown campaign, an empty store)."""
    settings = _settings()
    with console.status("auditing the store (every event of every campaign) ..."):
        summary = uvloop.run(persistence.run_audit(settings, campaign, users))
    print(json.dumps(summary, indent=2, sort_keys=True))
    if "error" in summary:
        console.print(f"[red]audit:[/] {summary['error']}")
        raise typer.Exit(2)
    if not summary["ok"]:
        raise typer.Exit(1)


@app.command("check")
def check_command(
    max_lag_s: float = typer.Option(30.0, help="the most an event may wait for the store"),
) -> None:
    """Compare the store with Redis: JSON per campaign; exit 1 if the store is behind by
    more than --max-lag-s, a campaign is missing from Redis, or there are dead letters."""
    settings = _settings()
    summary = uvloop.run(persistence.run_check(settings, _state_url(settings), max_lag_s))
    print(json.dumps(summary, indent=2, sort_keys=True))
    if not summary["ok"]:
        raise typer.Exit(1)


@app.command("recover")
def recover_command(
    campaign: str = typer.Argument(None, help="the campaign to rebuild (default: all)"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="print what would be rebuilt (JSON); change nothing"),
    yes: bool = typer.Option(False, "--yes", "-y",
                             help="rebuild live campaigns without asking (needed without a "
                                  "terminal)"),
) -> None:
    """Rebuild Redis state (counters, holds, limits, idempotent answers) from the store.

    Each campaign is fenced while it is rebuilt: its claims answer 503. A live
    campaign (not closed) is rebuilt only after a confirmation, or with --yes.
    """
    settings = _settings()
    logs.configure()
    url = _state_url(settings)
    plans = uvloop.run(persistence.plan_recover(settings, url, campaign))
    if dry_run:
        print(json.dumps([p.__dict__ for p in plans], indent=2, sort_keys=True))
        return
    live = [p.campaign_id for p in plans if p.live]
    if live and not yes:
        names = ", ".join(live)
        if not sys.stdin.isatty():
            fail(f"refusing to rebuild live campaign(s) {names} without a terminal to confirm: "
                 "pass --yes (their claims answer 503 while each is rebuilt)")
        if not typer.confirm(f"Rebuild live campaign(s) {names}? Their claims answer 503 "
                             "while each is rebuilt", default=False, err=True):
            fail("nothing rebuilt", 1)
    with Progress(TextColumn("rebuilding {task.description}"), BarColumn(),
                  MofNCompleteColumn(), console=console, transient=True) as progress:
        task = progress.add_task("", total=len(plans))

        def step(cid: str, done: bool) -> None:
            progress.update(task, advance=int(done), description=cid)

        rebuilt = uvloop.run(persistence.run_recover(
            settings, url, [p.campaign_id for p in plans], step))
    print(json.dumps(rebuilt, indent=2, sort_keys=True))


@app.command("valkey-cluster")
def valkey_cluster_command(
    primaries: int = typer.Option(3, min=1, max=16, help="primaries (the slots split evenly)"),
    replicas: int = typer.Option(1, min=0, max=4, help="replicas of each primary"),
    node_timeout_ms: int = typer.Option(5000, min=100, max=600_000,
                                        help="cluster-node-timeout: silence before failover"),
) -> None:
    """Run a fresh local Valkey Cluster under STAMPEDE_DATA_DIR/cluster until Ctrl-C, to try
    cluster mode: prints the two variables that point `serve` and the tools at it (and,
    without replicas, STAMPEDE_CLUSTER_WAIT_REPLICAS=0)."""
    data_dir = Settings.from_env({k: v for k, v in os.environ.items()
                                  if k == "STAMPEDE_DATA_DIR"}).data_dir
    cluster = LocalValkeyCluster(data_dir, primaries, replicas, node_timeout_ms)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    url = cluster.start()
    try:
        # without replicas no write could be acknowledged by one: say so to `serve`
        no_wait = "" if replicas else " STAMPEDE_CLUSTER_WAIT_REPLICAS=0"
        print(f"STAMPEDE_REDIS_URL={url} STAMPEDE_REDIS_CLUSTER=1{no_wait}", flush=True)
        console.print(f"Valkey Cluster: {primaries} primaries, {replicas} replica(s) each, "
                      f"data under {data_dir / 'cluster'}; Ctrl-C stops every node")
        stop.wait()
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> None:
    """The `stampede` command: user errors as one line, never a traceback."""
    try:
        code = app(args=argv, prog_name="stampede", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # bare `stampede`: the help, as a usage error
        exc.show()
        code = USAGE
    except UsageError as exc:
        where = f"stampede {exc.ctx.info_name}" if exc.ctx and exc.ctx.parent else "stampede"
        fail(f"{exc.format_message()} (see `{where} --help`)")
    except typer.Abort:
        fail("aborted", 1)
    except ConfigError as exc:
        fail(f"configuration error: {exc}")
    except (UserError, LookupError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except sqlalchemy.exc.ArgumentError as exc:
        fail(f"configuration error: STAMPEDE_STORE_URL: {exc}")
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        fail(f"cannot reach Redis: {exc}", UNREACHABLE)
    except (UnavailableError, sqlalchemy.exc.OperationalError, OSError) as exc:
        fail(f"unavailable: {exc}", UNREACHABLE)
    except Exception as exc:
        if not logs.configured():  # a tool's bug: the traceback is for whoever reports it
            raise
        logs.log_crash(exc)  # a service's: one JSON line, as all its logs
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
