"""The Kubernetes manifests as ``kubectl kustomize`` renders them, and ways to look into them."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}

Manifest = dict[str, Any]


def kubectl() -> str:
    """The kubectl of the development lock (beside this interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    assert found, "kubectl is missing: make setup installs it from requirements-dev.lock"
    return found


@functools.cache
def render(overlay: str) -> tuple[Manifest, ...]:
    """Every object ``kubectl kustomize`` makes of ``overlay`` (a key of ``OVERLAYS``)."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS[overlay])],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(overlay: str, kind: str, name: str | None = None) -> list[Manifest]:
    return [
        doc
        for doc in render(overlay)
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(overlay: str, kind: str, name: str) -> Manifest:
    found = find(overlay, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found in {overlay}"
    return found[0]


def pod_spec(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


def containers(deployment: Manifest, *, init: bool = True) -> Iterator[Manifest]:
    spec = pod_spec(deployment)
    yield from spec.get("initContainers", []) if init else []
    yield from spec["containers"]


def container(deployment: Manifest, name: str) -> Manifest:
    found = [c for c in containers(deployment) if c["name"] == name]
    assert len(found) == 1, f"container {name} in {deployment['metadata']['name']}"
    return found[0]


def config_data(overlay: str) -> dict[str, str]:
    data: dict[str, str] = one(overlay, "ConfigMap", "herald-config")["data"]
    return data


def secret_data(name: str = "herald-secrets") -> dict[str, str]:
    """The base's placeholder Secret (the production overlay ships none)."""
    data: dict[str, str] = one("base", "Secret", name)["stringData"]
    return data


def environment(
    overlay: str, deployment: Manifest, container_spec: Manifest, secrets: dict[str, str]
) -> dict[str, str]:
    """The environment the kubelet gives ``container_spec``: envFrom, then env over it."""
    configs = {m["metadata"]["name"]: m["data"] for m in find(overlay, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container_spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configs[source["configMapRef"]["name"]])
        else:
            assert source["secretRef"]["name"] == "herald-secrets"
            env.update(secrets)
    for variable in container_spec.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = configs[ref["name"]][ref["key"]]
    return env


def empty_dir_mounts(deployment: Manifest, container_spec: Manifest) -> list[str]:
    """Where ``container_spec`` mounts an emptyDir: the only places it may write."""
    empty = {v["name"] for v in pod_spec(deployment).get("volumes", []) if "emptyDir" in v}
    return [m["mountPath"] for m in container_spec.get("volumeMounts", []) if m["name"] in empty]


def parse_ini(text: str) -> dict[str, dict[str, str]]:
    """PgBouncer's ini: sections of ``key = value`` (``;`` and ``#`` start comments)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def check_pgbouncer_ini(ini: dict[str, dict[str, str]], dsns: list[str]) -> None:
    """Transaction pooling as Herald needs it, and a database for every DSN the services use."""
    settings = ini["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert settings["server_reset_query"] == ""
    assert "extra_float_digits" in settings["ignore_startup_parameters"].split(",")
    assert settings["unix_socket_dir"] == ""
    for dsn in dsns:
        host_port, _, database = dsn.split("@")[1].partition("/")
        assert host_port == f"pgbouncer:{settings['listen_port']}", dsn
        assert database in ini["databases"], dsn
