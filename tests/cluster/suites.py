"""Suites of other folders run again in cluster mode: their test functions, collected
into a module of tests/cluster, take this folder's fixtures (`engine`,
`settings`, `clean_redis`: an engine, settings and a URL on the session's Valkey
Cluster) instead of the single server's."""

import importlib
from collections.abc import Callable
from typing import Any


def suite_of(module: str, *names: str) -> dict[str, Callable[..., Any]]:
    """The test functions of `module` (all of them, or those named), by name: a whole
    suite listed this way follows every test added to it later."""
    found = {name: fn for name, fn in vars(importlib.import_module(module)).items()
             if name.startswith("test_") and callable(fn)}
    missing = set(names) - set(found)
    assert not missing, f"{module} has no {sorted(missing)}"
    return {name: found[name] for name in names} if names else found


def gathered(*suites: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Several suites in one module; two tests of one name would hide each other."""
    merged: dict[str, Callable[..., Any]] = {}
    for suite in suites:
        clash = set(merged) & set(suite)
        assert not clash, f"tests named alike in two suites: {sorted(clash)}"
        merged.update(suite)
    return merged
