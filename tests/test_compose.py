"""docker-compose.yml, read as YAML: what a restart or a recreated container needs.

(`bin/test` also validates it with a compose CLI when one can be had.)
"""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


CLUSTER_NODES = {f"valkey-c{n}" for n in range(1, 7)}
ONE_SHOT = {"cluster-create"}
"""Services that run once to completion: no restart, no health check."""


def test_every_service_restarts_and_reports_its_health() -> None:
    services = compose()["services"]
    assert set(services) == {"valkey", "postgres", "stampede", "prometheus", "grafana",
                             "cluster-create", "stampede-cluster"} | CLUSTER_NODES
    assert {n for n, s in services.items() if "monitoring" in s.get("profiles", ())} == {
        "prometheus", "grafana"}  # only with `--profile monitoring`
    assert {n for n, s in services.items() if "cluster" in s.get("profiles", ())} == {
        "cluster-create", "stampede-cluster"} | CLUSTER_NODES  # only with `--profile cluster`
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        assert service.get("restart") in ("unless-stopped", "always"), name
        check = service.get("healthcheck", {})
        assert check.get("test"), name


def test_the_service_is_healthy_only_when_ready() -> None:
    test = " ".join(compose()["services"]["stampede"]["healthcheck"]["test"])
    assert "/readyz" in test and ":8000" in test


def test_generated_secrets_live_in_a_named_volume() -> None:
    doc = compose()
    mounts = doc["services"]["stampede"]["volumes"]
    named = [m.split(":")[0] for m in mounts if m.endswith(":/app/var")]
    assert named and named[0] in doc["volumes"], mounts
    # /app/var is where the image keeps them (STAMPEDE_DATA_DIR in the Dockerfile).
    assert "STAMPEDE_DATA_DIR=/app/var" in (ROOT / "Dockerfile").read_text()


def test_the_service_waits_for_healthy_state_and_store() -> None:
    depends = compose()["services"]["stampede"]["depends_on"]
    assert depends == {"valkey": {"condition": "service_healthy"},
                       "postgres": {"condition": "service_healthy"}}


def test_the_monitoring_profile_mounts_the_shipped_rules_and_dashboard() -> None:
    services = compose()["services"]
    mounted = [m.split(":")[0] for name in ("prometheus", "grafana")
               for m in services[name]["volumes"]]
    assert "./deploy/prometheus/alerts.yml" in mounted
    assert "./deploy/grafana/stampede-dashboard.json" in mounted
    for source in mounted:
        assert (ROOT / source).exists(), source
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["stampede:8001"]  # the admin listener: /metrics is there


def test_the_cluster_profile_is_three_primaries_with_replicas_and_a_gateway_on_it() -> None:
    doc = compose()
    services = doc["services"]
    for name in CLUSTER_NODES:
        command = services[name]["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes", name
        assert "--appendonly" in command and "noeviction" in command, name
        (volume,) = services[name]["volumes"]
        assert volume == f"{name}-data:/data" and f"{name}-data" in doc["volumes"]
    create = services["cluster-create"]
    assert create["depends_on"] == {n: {"condition": "service_healthy"} for n in CLUSTER_NODES}
    script = " ".join(create["command"])
    assert "--cluster create" in script and "--cluster-replicas 1" in script
    assert "for n in 1 2 3 4 5 6" in script  # six nodes: three primaries, three replicas
    assert "cluster_state:ok ||" in script  # formed once: a restart leaves it be
    gateway = services["stampede-cluster"]
    env = gateway["environment"]
    assert env["STAMPEDE_REDIS_CLUSTER"] == "1"
    assert env["STAMPEDE_REDIS_URL"].startswith("redis://valkey-c1:")
    assert gateway["depends_on"]["cluster-create"] == {
        "condition": "service_completed_successfully"}
    published = {p.split(":")[1] for p in gateway["ports"]}
    assert published.isdisjoint({p.split(":")[1] for p in services["stampede"]["ports"]})
