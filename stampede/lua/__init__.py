"""The atomic operations of Stampede, one Lua file per operation.

Files are package resources; `stampede.state.scripts` reads them, resolves their
`--@include <name>` lines against `include/` or the fragments generated from
the Python definitions of key sets, records and arguments (`keys`, `records`,
`args`...: stampede/state/luagen.py), and registers each once per client. Every
script takes the campaign's fixed key set first (`K`, from
`stampede.state.keys.CampaignKeys`).
"""

from pathlib import Path

LUA_DIR = Path(__file__).parent


def source_path(name: str) -> Path:
    """Path of the operation `name` (without `.lua`)."""
    return LUA_DIR / f"{name}.lua"


def include_path(name: str) -> Path:
    """Path of the shared fragment `name` (without `.lua`)."""
    return LUA_DIR / "include" / f"{name}.lua"
