"""The `stampede` command: serve, and tools around it."""

from pathlib import Path

import typer
import uvloop
from rich.console import Console

from engine import Settings
from engine.errors import ConfigError, ServerError
from engine.valkey import EmbeddedValkey
from gateway import credentials
from gateway.auth import mint_user_token
from gateway.server import Listen, serve

app = typer.Typer(help="Stampede: rush-sale and claim engine.", no_args_is_help=True)
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="public API port"),
    admin_port: int = typer.Option(8001, help="admin API and dashboard port"),
    workers: int = typer.Option(1, min=1, help="gateway processes sharing the port"),
) -> None:
    """Run the public API, the admin API and the hold sweeper."""
    settings = _settings()
    if workers != 1:
        console.print("[red]--workers > 1 is not available yet[/]")
        raise typer.Exit(2)
    auth = credentials.authenticator(settings)
    valkey = None
    redis_url = settings.redis_url
    try:
        if redis_url is None:
            valkey = EmbeddedValkey(settings.data_dir, settings.appendfsync)
            redis_url = valkey.start()
        listen = Listen(host, port, admin_port)

        def banner() -> None:
            _print_banner(settings, listen, redis_url or "", valkey is not None)

        uvloop.run(serve(settings, redis_url, auth, listen, on_started=banner))
    except (ServerError, OSError) as exc:
        console.print(f"[red]cannot start:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass
    finally:
        if valkey is not None:
            valkey.stop()
    console.print("stopped")


def _print_banner(settings: Settings, listen: Listen, redis_url: str, embedded: bool) -> None:
    where = "embedded Valkey" if embedded else "Redis"
    console.print(f"[bold]Stampede[/] is serving")
    console.print(f"  public API   http://{listen.host}:{listen.port}/v1")
    console.print(f"  admin API    http://{listen.host}:{listen.admin_port}/admin/v1")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
