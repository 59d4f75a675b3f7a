"""The `stampede` command: serve, and tools around it."""

import json

import typer
import uvloop
from prometheus_client import start_http_server
from rich.console import Console

from stampede import Settings, logs
from stampede.api.auth import mint_user_token
from stampede.domain.config import checked
from stampede.errors import ConfigError, ServerError
from stampede.runtime import credentials, persistence
from stampede.runtime.server import Listen, serve
from stampede.runtime.valkey import EmbeddedValkey, embedded_url
from stampede.runtime.workers import WorkerPool

app = typer.Typer(help="Stampede: rush-sale and claim engine.", no_args_is_help=True)
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return checked(Settings.from_env())
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="public API port"),
    admin_port: int = typer.Option(8001, help="admin API and dashboard port"),
    workers: int = typer.Option(1, min=1, max=64, help="gateway processes sharing the ports"),
) -> None:
    """Run the public API, the admin API and the hold sweeper."""
    settings = _settings()
    logs.configure()
    auth = credentials.authenticator(settings)
    valkey = None
    redis_url = settings.redis_url
    try:
        if redis_url is None:
            valkey = EmbeddedValkey(settings.data_dir, settings.appendfsync)
            redis_url = valkey.start()
        listen = Listen(host, port, admin_port)

        def banner() -> None:
            _print_banner(settings, listen, redis_url or "", valkey is not None, workers)

        if workers == 1:
            uvloop.run(serve(settings, redis_url, auth, listen, on_started=banner))
        else:
            pool = WorkerPool(workers, host, port, admin_port, redis_url,
                              settings.data_dir / "metrics", settings.shutdown_grace_s)
            banner()
            pool.run()
    except (ServerError, OSError) as exc:
        console.print(f"[red]cannot start:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass
    finally:
        if valkey is not None:
            valkey.stop()
    console.print("stopped")


@app.command("worker", hidden=True)
def worker_command(index: int = typer.Option(...), host: str = typer.Option(...),
                   port: int = typer.Option(...), admin_port: int = typer.Option(...)) -> None:
    """One gateway process of `serve --workers N` (started by the master)."""
    settings = _settings()
    logs.configure()
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
    where = "embedded Valkey" if embedded else "Redis"
    console.print(f"[bold]Stampede[/] is serving ({workers} worker{'s' * (workers > 1)})")
    console.print(f"  public API   http://{listen.host}:{listen.port}/v1  "
                  f"(docs: /docs, spec: /openapi.json)")
    console.print(f"  admin API    http://{listen.host}:{listen.admin_port}/admin/v1")
    console.print(f"  metrics      http://{listen.host}:{listen.port}/metrics")
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
def token_command(user: str, ttl_s: int = typer.Option(3600, help="lifetime in seconds")) -> None:
    """Print a user JWT signed with the service's secret (for trials and load tests)."""
    print(mint_user_token(credentials.jwt_secret(_settings()), user, ttl_s))


@app.command("admin-token")
def admin_token_command() -> None:
    """Print the first operator token the service accepts."""
    tokens = [t for t in credentials.admin_tokens(_settings()) if t.role.value == "operator"]
    if not tokens:
        raise typer.Exit(1)
    print(tokens[0].token)


def _state_url(settings: Settings) -> str:
    """STAMPEDE_REDIS_URL, else the embedded Valkey a running `serve` started."""
    url = settings.redis_url or embedded_url(settings.data_dir)
    if not url:
        console.print("[red]no Redis:[/] set STAMPEDE_REDIS_URL, or start `stampede serve` "
                      f"(its embedded Valkey is found under {settings.data_dir})")
        raise typer.Exit(2)
    return url


@app.command("persist")
def persist_command(
    drain: bool = typer.Option(False, help="persist what the streams hold now, then exit"),
    metrics_port: int = typer.Option(0, help="serve /metrics on this port (0: off)"),
) -> None:
    """Run the persister alone: event streams into the durable store (several may run)."""
    settings = _settings()
    logs.configure()
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    try:
        uvloop.run(persistence.run_persister(settings, _state_url(settings), drain))
    except KeyboardInterrupt:
        pass


@app.command("audit")
def audit_command(
    campaign: str = typer.Option(None, help="only this campaign"),
    users: bool = typer.Option(False, help="list every user's units"),
) -> None:
    """Recompute every campaign from the store alone; JSON summary; exit 1 on a violation."""
    settings = _settings()
    summary = uvloop.run(persistence.run_audit(settings, campaign, users))
    print(json.dumps(summary, indent=2, sort_keys=True))
    if not summary["ok"]:
        raise typer.Exit(1)


@app.command("recover")
def recover_command(
    campaign: str = typer.Argument(None, help="the campaign to rebuild (default: all)"),
) -> None:
    """Rebuild Redis state (counters, holds, limits, idempotent answers) from the store."""
    settings = _settings()
    logs.configure()
    rebuilt = uvloop.run(persistence.run_recover(settings, _state_url(settings), campaign))
    print(json.dumps(rebuilt, indent=2, sort_keys=True))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
