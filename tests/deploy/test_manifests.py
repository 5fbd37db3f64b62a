"""The Kubernetes manifests render, every object is valid against the Kubernetes and KEDA
schemas, and they hold what the pods need: probes, a locked-down security context, writable
paths only on emptyDir volumes, autoscalers owning their replica counts, disruption budgets."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from herald_api.settings import ServerSettings
from herald_cache_invalidator import main as cache_invalidator_main
from herald_shared.messaging.topology import ConsumerQueues
from herald_shared.settings import SecuritySettings, TelemetrySettings
from herald_worker import main as worker_main
from tests.deploy.rendered import (
    K8S,
    OVERLAYS,
    Manifest,
    check_pgbouncer_ini,
    config_data,
    container,
    containers,
    empty_dir_mounts,
    environment,
    find,
    one,
    parse_ini,
    pod_spec,
    render,
    secret_data,
)

#: The oldest Kubernetes release the manifests support, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
KEDA_SCHEMAS = K8S / "schemas" / "keda"
SERVICES = {
    # Deployment: (container, listening port, the code's own default for it)
    "herald-api": ("api", 8000, ServerSettings().port),
    "herald-worker": ("worker", 9101, worker_main.HEALTH_PORT),
    "herald-cache-invalidator": (
        "cache-invalidator",
        9102,
        cache_invalidator_main.HEALTH_PORT,
    ),
}
#: Where /metrics is scraped when not on the listening port: the API's metrics port.
METRICS_PORTS = {"herald-api": (9100, ServerSettings().metrics_port)}
CONSUMERS = {
    "herald-worker": worker_main.CONSUMER_NAME,
    "herald-cache-invalidator": cache_invalidator_main.CONSUMER_NAME,
}

#: Where a service writes, and where it would without the variable (HERALD_TRACE_DIR's default
#: is relative: the working directory, /app in the image, which is read-only).
WRITTEN = {
    "HERALD_TRACE_DIR": TelemetrySettings().dir,
    "PROMETHEUS_MULTIPROC_DIR": "/tmp",  # noqa: S108 - the API makes one under TMPDIR
    "TMPDIR": "/tmp",  # noqa: S108
}

overlays = pytest.mark.parametrize("overlay", sorted(OVERLAYS))


def deployments(overlay: str) -> list[Manifest]:
    return find(overlay, "Deployment")


def strict(schema: Any) -> Any:
    """``schema`` refusing unknown fields, as the API server's strict field validation does."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def keda_schema(manifest: Manifest) -> dict[str, Any]:
    version = manifest["apiVersion"].split("/")[1]
    path = KEDA_SCHEMAS / f"{manifest['kind'].lower()}-{version}.json"
    schema: dict[str, Any] = strict(json.loads(path.read_text()))
    return schema


@overlays
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid(overlay: str, version: str) -> None:
    for manifest in render(overlay):
        if manifest["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(manifest, keda_schema(manifest))
        else:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_the_strict_keda_schema_refuses_a_misspelt_field() -> None:
    scaled = copy.deepcopy(one("base", "ScaledObject", "herald-worker"))
    scaled["spec"]["maxReplicas"] = 30
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(scaled, keda_schema(scaled))


@overlays
def test_every_container_is_probed_and_locked_down(overlay: str) -> None:
    for deployment in deployments(overlay):
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for each in containers(deployment):
            context = each["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, each["name"]
            assert context["readOnlyRootFilesystem"] is True, each["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, each["name"]
            assert "memory" in each["resources"]["limits"], each["name"]
        for each in containers(deployment, init=False):
            assert {"readinessProbe", "livenessProbe"} <= each.keys(), each["name"]


@overlays
def test_services_write_only_under_their_empty_dirs(overlay: str) -> None:
    for deployment in deployments(overlay):
        for each in containers(deployment):
            if not any("configMapRef" in source for source in each.get("envFrom", [])):
                continue
            env = environment(overlay, deployment, each, secret_data())
            writable = empty_dir_mounts(deployment, each)
            for variable, default in WRITTEN.items():
                path = env.get(variable, default)
                assert any(Path(path).is_relative_to(mount) for mount in writable), (
                    f"{each['name']}: {variable}={path} is not on an emptyDir ({writable})"
                )


@overlays
def test_services_listen_where_their_probes_and_scrapers_look(overlay: str) -> None:
    for name, (container_name, port, default) in SERVICES.items():
        deployment = one(overlay, "Deployment", name)
        spec = container(deployment, container_name)
        assert port == default
        scraped, scraped_default = METRICS_PORTS.get(name, (port, port))
        assert scraped == scraped_default
        assert [p["containerPort"] for p in spec["ports"]] == sorted({port, scraped})
        port_name = spec["ports"][0]["name"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert spec[probe]["httpGet"]["port"] == port_name
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(scraped)
    assert config_data(overlay)["HERALD_CONSUMER_HEALTH_HOST"] == "0.0.0.0"  # noqa: S104
    assert config_data(overlay)["HERALD_API_HOST"] == "0.0.0.0"  # noqa: S104


@overlays
def test_autoscalers_own_the_replica_counts(overlay: str) -> None:
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in find(overlay, "HorizontalPodAutoscaler")
    }
    scaled |= {so["spec"]["scaleTargetRef"]["name"] for so in find(overlay, "ScaledObject")}
    assert scaled == set(SERVICES)
    for name in scaled:
        assert "replicas" not in one(overlay, "Deployment", name)["spec"], name


@overlays
def test_every_deployment_has_a_disruption_budget(overlay: str) -> None:
    budgets = {
        pdb["spec"]["selector"]["matchLabels"]["app"]: pdb
        for pdb in find(overlay, "PodDisruptionBudget")
    }
    for deployment in deployments(overlay):
        app = deployment["spec"]["selector"]["matchLabels"]["app"]
        assert app in budgets, deployment["metadata"]["name"]


@overlays
def test_keda_scales_both_consumers_on_their_own_queues(overlay: str) -> None:
    namespace = config_data(overlay)["HERALD_AMQP_NAMESPACE"]
    authentications = {t["metadata"]["name"]: t for t in find(overlay, "TriggerAuthentication")}
    for name, consumer in CONSUMERS.items():
        scaled = one(overlay, "ScaledObject", name)
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == ConsumerQueues(namespace, consumer, ()).main
        authentication = authentications[trigger["authenticationRef"]["name"]]
        (ref,) = authentication["spec"]["secretTargetRef"]
        assert ref["name"] == "herald-secrets"
        assert ref["key"] in secret_data()


def pgbouncer_ini(overlay: str) -> dict[str, dict[str, str]]:
    return parse_ini(one(overlay, "ConfigMap", "pgbouncer-config")["data"]["pgbouncer.ini"])


@overlays
def test_pgbouncer_is_configured_where_it_reads_its_configuration(overlay: str) -> None:
    ini = pgbouncer_ini(overlay)
    config = config_data(overlay)
    check_pgbouncer_ini(ini, [config["HERALD_DB_DSN"], config["HERALD_DB_REPLICA_DSN"]])
    settings = ini["pgbouncer"]
    deployment = one(overlay, "Deployment", "pgbouncer")
    spec = container(deployment, "pgbouncer")
    mounts = {m["mountPath"]: m for m in spec["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    (ini_path,) = spec["args"]
    assert volumes[mounts[ini_path]["name"]]["configMap"]["name"] == "pgbouncer-config"
    auth_dir, _, auth_name = settings["auth_file"].rpartition("/")
    userlist = volumes[mounts[auth_dir]["name"]]["secret"]
    assert auth_name in secret_data(userlist["secretName"])
    assert [p["containerPort"] for p in spec["ports"]] == [int(settings["listen_port"])]
    service = one(overlay, "Service", "pgbouncer")
    assert [p["port"] for p in service["spec"]["ports"]] == [int(settings["listen_port"])]
    assert config["HERALD_DB_PGBOUNCER"] == "true"


def test_the_base_placeholder_secret_is_refused_by_the_services() -> None:
    assert config_data("base")["HERALD_ENV"] == "production"
    with pytest.raises(ValidationError, match="HERALD_CURSOR_SECRET"):
        SecuritySettings(
            env=config_data("base")["HERALD_ENV"],
            cursor_secret=secret_data()["HERALD_CURSOR_SECRET"],
        )


PLACEHOLDER = re.compile(r"replace|change-?me|example\.com|todo|xxx", re.IGNORECASE)


def test_production_ships_no_secret_and_no_placeholder() -> None:
    assert find("production", "Secret") == []
    for manifest in render("production"):
        text = json.dumps(manifest)
        assert not PLACEHOLDER.search(text), f"{manifest['kind']}/{manifest['metadata']['name']}"


CLUSTER_PROMETHEUS = K8S.parent / "prometheus" / "kubernetes.yml"


def test_the_cluster_prometheus_scrapes_the_annotated_pods(tmp_path: Path) -> None:
    config = yaml.safe_load(CLUSTER_PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    namespace = one("base", "Namespace", "herald")["metadata"]["name"]
    assert discovery == {"role": "pod", "namespaces": {"names": [namespace]}}
    keep = job["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert (keep["action"], keep["regex"]) == ("keep", "true")
    # Debian's Prometheus is built without Kubernetes discovery: promtool checks everything
    # else (relabelling, rule files) with the discovery swapped for a static target.
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    shutil.copy(CLUSTER_PROMETHEUS.with_name("alerts.yml"), tmp_path)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make tools installs it"
    result = subprocess.run(
        [promtool, "check", "config", str(checked)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_serves_no_api_documents() -> None:
    assert config_data("production")["HERALD_API_DOCS_ENABLED"] == "false"
    assert "HERALD_API_DOCS_ENABLED" not in config_data("base")  # on by default elsewhere
