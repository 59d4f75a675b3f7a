"""The shipped Prometheus alert rules and Grafana dashboard (deploy/): valid, tested,
and using only metrics that stampede/metrics.py defines."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from stampede import metrics

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "stampede-dashboard.json"
NO_PROMTOOL = "promtool is not installed (Debian: apt-get install prometheus; bin/test does)"

_KEYWORDS = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                       "bool", "and", "or", "unless", "inf", "nan"))


def defined_series() -> set[str]:
    """Every series name the metrics of stampede.metrics expose."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Histogram):
            names.update(value._name + s for s in ("_bucket", "_sum", "_count"))
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def series_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small parser: strings, label
    matchers, ranges and label lists dropped; a word before "(" is a function)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    found = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", expr):
        word = match.group(0)
        if expr[match.end():].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        found.add(word)
    return found


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dash["panels"] for target in panel["targets"]]
    # Grafana's label_values(metric, label): the metric is the selector, the label is not.
    exprs += [re.sub(r"label_values\((.*),\s*\w+\)", r"\1", var["definition"])
              for var in dash["templating"]["list"] if "definition" in var]
    return exprs


@pytest.mark.parametrize("exprs", [rule_exprs, dashboard_exprs], ids=["rules", "dashboard"])
def test_every_metric_used_is_defined(exprs: Any) -> None:
    defined = defined_series()
    for expr in exprs():
        used = series_in(expr)
        assert used, f"no metric found in {expr!r}"
        unknown = sorted(used - defined)
        assert not unknown, f"{unknown} in {expr!r} are not in stampede/metrics.py"


def test_the_parser_finds_metrics_and_only_metrics() -> None:
    expr = ('sum by (campaign) (delta(stampede_holds_expired_units{campaign=~"a|b"}[5m] '
            'offset 1h)) / clamp_min(sum(rate(stampede_nope_total[5m])), 1e-3) > bool 0 '
            'and on (le) histogram_quantile(0.99, rate(x_bucket[$__rate_interval]))')
    assert series_in(expr) == {"stampede_holds_expired_units", "stampede_nope_total", "x_bucket"}
    assert "stampede_nope_total" not in defined_series()
    assert {"stampede_claims_total", "stampede_http_request_seconds_bucket",
            "stampede_holds_units"} <= defined_series()


def test_the_alerts_cover_what_operations_needs() -> None:
    text = "\n".join(rule_exprs())
    for metric in ("stampede_persister_lag_seconds", "stampede_reconcile_difference_units",
                   'status=~"5.."', "stampede_redis_memory_used_bytes",
                   "stampede_restarts_total", "stampede_holds_expired_units"):
        assert metric in text, metric


def test_the_dashboard_is_importable_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "stampede"
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(NO_PROMTOOL)
    return found


def test_promtool_accepts_the_rules(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_fire_when_they_should_and_not_otherwise(promtool: str) -> None:
    """deploy/prometheus/alerts_test.yml: promtool's unit tests of the rules."""
    done = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True,
                          text=True, timeout=120, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_wrong_expectation_fails_the_rule_tests(promtool: str, tmp_path: Path) -> None:
    """The rule tests can fail: the same tests expecting another value do."""
    shutil.copy(RULES, tmp_path / RULES.name)
    broken = RULE_TESTS.read_text().replace("150 held units", "151 held units")
    assert broken != RULE_TESTS.read_text()
    (tmp_path / RULE_TESTS.name).write_text(broken)
    done = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
