"""Stampede: a rush-sale and claim engine on atomic Redis/Valkey Lua scripts.

The package's folders follow the path of a claim, each depending only on
those before it: `lua` (the scripts) → `state` (key names, record codecs,
the script registry) → `domain` (campaigns, claims, guard, queues, coupons;
no HTTP) → `durable` (store, persister, audit, recovery) → `api` (aiohttp
apps) → `runtime` (server, workers, embedded Valkey, CLI). `docs/` draws it.

`Engine`, `Outcome` and `Settings` are importable from here; they load on
first use so that `import stampede.settings` stays cheap.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Engine", "Outcome", "Settings", "__version__"]

if TYPE_CHECKING:
    from stampede.domain.engine import Engine
    from stampede.outcomes import Outcome
    from stampede.settings import Settings


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from stampede.domain.engine import Engine
        return Engine
    if name == "Outcome":
        from stampede.outcomes import Outcome
        return Outcome
    if name == "Settings":
        from stampede.settings import Settings
        return Settings
    raise AttributeError(f"module 'stampede' has no attribute {name!r}")
