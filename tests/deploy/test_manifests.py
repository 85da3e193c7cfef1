"""Deployment files: Kubernetes manifests validate against the Kubernetes schemas, and the
deployment files agree with each other.

Why: a manifest with a misspelt field is accepted by YAML and only fails when someone
runs `kubectl apply` against a real cluster; strict schema validation (unknown fields
rejected) catches that here. The validator is `kubernetes-validate` (PyPI, dev
dependency), which bundles the Kubernetes JSON schemas, so no network is needed. The
other tests keep the copies of the view installer, the kustomization and the compose
file consistent, and run `docker compose config` when Docker Compose is installed.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
COMPOSE_FILE = ROOT / "compose.yaml"
# The oldest Kubernetes minor the manifests target (StatefulSet PVC retention policy is on
# by default from 1.27; Job podFailurePolicy is not used), a middle one, and the newest
# the validator knows.
KUBERNETES_VERSIONS = ("1.29", "1.33", "latest")


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest; kustomization.yaml is kustomize's input, not a resource."""
    return sorted(p for p in KUBERNETES_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


@functools.cache
def resources() -> list[tuple[str, dict[str, Any]]]:
    """(file:kind/name, document) for every resource of every manifest; parsed once."""
    found = []
    for path in manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append(
                    (f"{path.name}:{document['kind']}/{document['metadata']['name']}", document)
                )
    return found


def kinds() -> set[str]:
    return {document["kind"] for _, document in resources()}


def test_the_deployment_has_every_required_kind() -> None:
    assert {
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "Secret",
        "ConfigMap",
        "Job",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    } <= kinds()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed: it is a dev dependency (uv sync)",
    )
    wanted = kubernetes_validate.latest_version() if version == "latest" else version
    failures = []
    for name, document in resources():
        try:
            kubernetes_validate.validate(document, wanted, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(item) for item in error.path)
            failures.append(f"{name}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures.append(f"{name}: no schema: {error.message}")
    assert not failures, f"against Kubernetes {wanted}:\n" + "\n".join(failures)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())


def test_headless_service_and_advertised_addresses_agree() -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, document in resources():
        by_kind.setdefault(document["kind"], []).append(document)
    (statefulset,) = by_kind["StatefulSet"]
    headless = next(s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None")
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["publishNotReadyAddresses"] is True
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    advertised = env["CAUSALKV_ADVERTISE"]["value"]
    assert advertised == f"$(POD_NAME).{headless['metadata']['name']}:8081"
    job = by_kind["Job"][0]
    job_env = {
        item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert job_env["PEER_SERVICE"]["value"] == headless["metadata"]["name"]
    assert job_env["STATEFULSET"]["value"] == statefulset["metadata"]["name"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/ping"


def installer_in_job() -> str:
    for _, document in resources():
        if document["kind"] == "ConfigMap" and "install_view.py" in document.get("data", {}):
            return str(document["data"]["install_view.py"])
    raise AssertionError("no ConfigMap holds install_view.py")


def test_compose_and_kubernetes_run_the_same_view_installer() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    assert compose["services"]["install-view"]["command"][0] == installer_in_job()
    compile(installer_in_job(), "install_view.py", "exec")


def test_compose_cluster_has_six_nodes_in_two_shards_with_volumes() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = compose["services"]
    nodes = sorted(name for name in services if name.startswith("node"))
    assert len(nodes) == 6
    ids = [services[name]["environment"]["NODE_IDENTIFIER"] for name in nodes]
    assert ids == [str(k) for k in range(1, 7)]
    for name in nodes:
        (volume,) = services[name]["volumes"]
        assert volume.endswith(":/data") and volume.split(":")[0] in compose["volumes"]
    installer = services["install-view"]["environment"]
    assert installer["NODES"].split(",") == [f"{name}:8081" for name in nodes]
    assert installer["SHARDS"] == "2"


def test_compose_file_is_valid_for_docker_compose() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the Docker Compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
