"""The atomic operations of Stampede, one Lua file per operation.

Files are package resources; `stampede.state.scripts` reads them, resolves their
`--@include <name>` lines against `include/`, and registers each once per
client. Every script takes the campaign's fixed key set first (see
`include/common.lua` and `stampede.state.keys.campaign_keys`).
"""

from pathlib import Path

LUA_DIR = Path(__file__).parent


def source_path(name: str) -> Path:
    """Path of the operation `name` (without `.lua`)."""
    return LUA_DIR / f"{name}.lua"


def include_path(name: str) -> Path:
    """Path of the shared fragment `name` (without `.lua`)."""
    return LUA_DIR / "include" / f"{name}.lua"
