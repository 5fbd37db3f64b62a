"""docker-compose.yml is valid for a real Compose implementation, and every Herald service
waits for what it needs, is health-checked, reaches PostgreSQL through PgBouncer in transaction
mode with a streaming replica for reads, and is scraped by Prometheus."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.rendered import ROOT, check_pgbouncer_ini, parse_ini

HERALD = {"api": 8000, "worker": 9101, "cache-invalidator": 9102}
#: Where Prometheus finds each service's /metrics: the API's is off its public port.
SCRAPED = {"api": 9100, "worker": 9101, "cache-invalidator": 9102}
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: make tools installs it (deploy/local/ensure-tools.sh)"
    return found


@functools.cache
def compose() -> dict[str, Any]:
    """The file as Compose resolves it (anchors, merges and defaults applied)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [tool("docker-compose"), "--file", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    return resolved


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Target → source of a service's volumes (Compose v1 prints them as source:target:mode)."""
    pairs = (volume.split(":")[:2] for volume in service.get("volumes", []))
    return {target: source for source, target in pairs}


def test_herald_services_start_after_what_they_need_and_are_health_checked() -> None:
    every = services()
    for name in HERALD:
        service = every[name]
        assert service["build"]["args"]["SERVICE"] == name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py"]
        conditions = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert conditions.pop("migrate") == "service_completed_successfully"
        assert {"pgbouncer", "postgres-replica", "rabbitmq", "redis"} <= conditions.keys()
        assert set(conditions.values()) == {"service_healthy"}
    # Waiting on health needs a health check to wait on.
    for name, service in every.items():
        for dependency, spec in service.get("depends_on", {}).items():
            if spec["condition"] == "service_healthy":
                assert "test" in every[dependency].get("healthcheck", {}), f"{name} → {dependency}"


def test_the_database_is_reached_through_pgbouncer_with_a_streaming_replica() -> None:
    every = services()
    env = every["api"]["environment"]
    assert env["HERALD_DB_PGBOUNCER"] == "true"
    pgbouncer = mounts(every["pgbouncer"])
    (ini_path,) = every["pgbouncer"]["command"][1:]
    ini = parse_ini(Path(pgbouncer[ini_path]).read_text())
    check_pgbouncer_ini(ini, [env["HERALD_DB_DSN"], env["HERALD_DB_REPLICA_DSN"]])
    assert ini["pgbouncer"]["auth_file"] in pgbouncer
    assert "wal_level=replica" in every["postgres-primary"]["command"]
    replica = every["postgres-replica"]
    (entrypoint,) = replica["entrypoint"]
    script = Path(mounts(replica)[entrypoint]).read_text()
    assert "pg_basebackup" in script
    assert "--write-recovery-conf" in script
    # Migrations bypass transaction pooling: they hold a session advisory lock.
    assert "@postgres-primary:5432/" in every["migrate"]["environment"]["HERALD_DB_DSN"]


def test_the_rabbitmq_management_port_is_published() -> None:
    ports = services()["rabbitmq"]["ports"]
    assert any(port["target"] == 15672 and port["published"] == 15672 for port in ports)


def test_prometheus_scrapes_every_service_with_the_rules() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets |= set(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            targets |= {f"{name}:{dns['port']}" for name in dns["names"]}
    assert targets == {f"{name}:{port}" for name, port in SCRAPED.items()}
    mounted = mounts(services()["prometheus"])
    assert mounted["/etc/prometheus/prometheus.yml"] == str(PROMETHEUS_CONFIG)
    assert mounted["/etc/prometheus/alerts.yml"] == str(PROMETHEUS_CONFIG.with_name("alerts.yml"))
