"""k8s/: every file checked offline against the schema that will judge it on a cluster.

No cluster runs here. Kubernetes objects are validated with `kubernetes-validate` (the API's
own OpenAPI schemas, strict: unknown fields fail), the Helm values with the official chart's
values schema (k8s/dagster-chart-values.schema.json), the instance file with Dagster's own
instance schema, and the Role against the API calls dagster-k8s's source actually makes.
"""

import json
import re
from pathlib import Path

import dagster_k8s
import jsonschema
import kubernetes_validate
import pytest
import yaml

from traincraft_assets_tests.k8s.deployment import K8S

KUBERNETES_VERSION = "1.30"  # the oldest minor our manifests promise to work on
MANIFESTS = sorted((K8S / "manifests").glob("*.yaml"))


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_valid_kubernetes_objects_in_our_namespace(path):
    for doc in _documents(path):
        _validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "traincraft", doc["metadata"]["name"]


def _pod(name, pod_security, volumes, container_security, resources, mounts, env=()) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "traincraft"},
        "spec": {
            "securityContext": pod_security,
            "volumes": volumes,
            "containers": [
                {
                    "name": name,
                    "image": "registry.example.com/traincraft:0.1.0",
                    "securityContext": container_security,
                    "resources": resources,
                    "volumeMounts": mounts,
                    "env": list(env),
                }
            ],
        },
    }


def test_helm_values_follow_the_charts_schema():
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    schema = json.loads((K8S / "dagster-chart-values.schema.json").read_text())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(values)
    ]
    assert not errors, errors
    daemon = values["dagsterDaemon"]
    assert daemon["runMonitoring"]["enabled"] and daemon["runRetries"]["enabled"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "traincraft_assets"]


def test_the_instance_settings_in_the_values_are_accepted_by_dagster(tmp_path):
    """The run queue and pool limits as the chart writes them into the instance's dagster.yaml
    (run_coordinator from dagsterDaemon.runCoordinator, the rest from additionalInstanceConfig):
    Dagster refuses some combinations of the two when the instance starts."""
    from dagster._core.instance.config import dagster_instance_config

    values = yaml.safe_load((K8S / "values.yaml").read_text())
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    coordinator = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    if queue.get("maxConcurrentRuns") is not None:
        coordinator["config"] = {"max_concurrent_runs": queue["maxConcurrentRuns"]}
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump({"run_coordinator": coordinator, **values["additionalInstanceConfig"]})
    )
    config, _ = dagster_instance_config(str(tmp_path), "dagster.yaml")
    assert config["concurrency"]["pools"]["default_limit"] >= 1


def test_the_code_servers_pod_is_valid_non_root_and_mounts_the_store():
    """What the chart renders from the deployment item (and, through includeConfigInLaunchedRuns,
    what run and step pods inherit): the Kubernetes parts the chart schema leaves open."""
    [d] = yaml.safe_load((K8S / "values.yaml").read_text())["dagster-user-deployments"]["deployments"]
    _validate(
        _pod(
            "code-server",
            d["podSecurityContext"],
            d["volumes"],
            d["securityContext"],
            d["resources"],
            d["volumeMounts"],
            d["env"],
        )
    )
    assert d["podSecurityContext"]["runAsNonRoot"] and d["securityContext"]["readOnlyRootFilesystem"]
    assert not d["securityContext"]["allowPrivilegeEscalation"]
    mounts = {m["mountPath"]: m["name"] for m in d["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in d["volumes"]}
    assert claims[mounts["/store"]] == "traincraft-store"  # TRAINCRAFT_STORE in k8s/Dockerfile


def test_the_pod_profiles_configmap_is_a_valid_profiles_file(tmp_path):
    from traincraft_assets.defs.k8s.profiles import load_profiles

    [configmap] = _documents(K8S / "manifests" / "pod-profiles.yaml")
    path = tmp_path / "pod-profiles.yaml"
    path.write_text(configmap["data"]["pod-profiles.yaml"])
    profiles = load_profiles(path)
    assert profiles["gpu"].gpus >= 1 and profiles["cpu"].gpus == 0


def test_the_cluster_instance_file_loads_with_dagsters_own_schema(monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config

    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "x")
    config, _ = dagster_instance_config(str(K8S), "dagster.yaml")
    launcher = config["run_launcher"]
    result = process_config(dagster_k8s.K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    c = launcher["config"]
    _validate(
        _pod(
            "run",
            c["run_k8s_config"]["pod_spec_config"]["security_context"],
            c["volumes"],
            c["security_context"],
            {},
            c["volume_mounts"],
        )
    )


def _calls_dagster_k8s_makes() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for each API call in the launcher's and the executor's code."""
    verbs = {
        "create": "create",
        "read": "get",
        "list": "list",
        "delete": "delete",
        "patch": "patch",
        "replace": "update",
    }
    kinds = {"job": ("batch", "jobs"), "pod": ("", "pods"), "event": ("", "events")}
    package = Path(dagster_k8s.__file__).parent
    calls = set()
    for module in ("client.py", "launcher.py", "executor.py"):  # not pipes.py: no Pipes here
        for verb, kind, sub in re.findall(
            r"\.(\w+?)_namespaced_(job|pod|event)(_status|_log)?\b", (package / module).read_text()
        ):
            group, resource = kinds[kind]
            calls.add((group, resource + {"_status": "/status", "_log": "/log"}.get(sub, ""), verbs[verb]))
    return calls


def test_the_role_grants_exactly_what_dagster_k8s_uses():
    rbac = {doc["kind"]: doc for doc in _documents(K8S / "manifests" / "rbac.yaml")}
    granted = {
        (group, resource, verb)
        for rule in rbac["Role"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == _calls_dagster_k8s_makes()
    assert "ClusterRole" not in rbac and "ClusterRoleBinding" not in rbac
    assert rbac["RoleBinding"]["subjects"][0]["name"] == rbac["ServiceAccount"]["metadata"]["name"]


def test_the_image_runs_as_the_non_root_user_the_pods_expect():
    dockerfile = (K8S / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") == 2  # build stage, then a runtime stage without it
    assert "USER 10001:10001" in dockerfile
    assert "torch==2.13.0" in dockerfile and "torch==2.13.0" in (K8S.parent / "pyproject.toml").read_text()
    for env in ("TRAINCRAFT_DEPLOYMENT=k8s", "TRAINCRAFT_STORE=/store", "XDG_CACHE_HOME=/store/cache"):
        assert env in dockerfile
