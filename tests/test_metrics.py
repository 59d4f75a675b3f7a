"""Metrics are defined in stampede/metrics.py alone; a scrape's registry is chosen once."""

import ast
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

import stampede
from stampede import Settings
from stampede.errors import ConfigError
from stampede.metrics import scrape_registry

PACKAGE = Path(stampede.__file__).parent
METRIC_TYPES = frozenset({"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"})


def _constructs_metrics(source: str) -> list[int]:
    """Lines that construct a prometheus_client metric (imported by name or via the module)."""
    tree = ast.parse(source)
    names: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client":
            names |= {a.asname or a.name for a in node.names if a.name in METRIC_TYPES}
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "prometheus_client"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in names or \
                isinstance(func, ast.Attribute) and func.attr in METRIC_TYPES and \
                isinstance(func.value, ast.Name) and func.value.id in modules:
            lines.append(node.lineno)
    return lines


def test_only_stampede_metrics_constructs_metric_objects() -> None:
    found = {path.relative_to(PACKAGE).as_posix(): lines
             for path in sorted(PACKAGE.rglob("*.py"))
             if (lines := _constructs_metrics(path.read_text()))}
    assert list(found) == ["metrics.py"], found


def test_the_detector_sees_both_spellings() -> None:
    assert _constructs_metrics("from prometheus_client import Gauge as G\nx = G('a', 'b')\n")
    assert _constructs_metrics("import prometheus_client as p\nx = p.Counter('a', 'b')\n")
    assert not _constructs_metrics("from collections import Counter\nx = Counter()\n")


def test_settings_read_the_multiprocess_dir_once(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert Settings.from_env(env).metrics_multiprocess_dir == tmp_path
    assert Settings.from_env({}).metrics_multiprocess_dir is None
    with pytest.raises(ConfigError):  # only prometheus_client's own name sets it
        Settings.from_env({"STAMPEDE_METRICS_MULTIPROCESS_DIR": str(tmp_path)})


def test_scrape_registry(tmp_path: Path) -> None:
    assert scrape_registry(None) is REGISTRY
    aggregated = scrape_registry(tmp_path)
    assert aggregated is not REGISTRY
    assert b"stampede_claims_total" not in generate_latest(aggregated)  # no worker files yet
