"""Checks of rendered manifests that a JSON schema cannot express: the promises the chart makes
(hardened containers, probes on the right paths, drain before SIGKILL, workers never beyond
the partitions, credentials only from Secrets, settings the worker knows, a PDB per workload).

Each function takes the parsed documents of one ``helm template`` and returns problems as
sentences; an empty list means the promise holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Manifest = dict[str, Any]
CREDENTIAL_SUFFIXES = ("PASSWORD", "USERNAME")


def of_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m and m.get("kind") == kind]


def component(manifest: Manifest) -> str:
    return manifest.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component", "")


def _one(manifests: Iterable[Manifest], kind: str, comp: str) -> Manifest | None:
    found = [m for m in of_kind(manifests, kind) if component(m) == comp]
    return found[0] if found else None


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def security_problems(manifests: list[Manifest]) -> list[str]:
    problems = []
    for deployment in of_kind(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        pod_context = pod.get("securityContext", {})
        if pod_context.get("runAsNonRoot") is not True:
            problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        if pod_context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: the service-account token is mounted though nothing calls the API")
        tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in _containers(pod):
            where = f"{name}/{container['name']}"
            context = container.get("securityContext", {})
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if context.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities do not drop ALL")
            if context.get("runAsNonRoot") is not True and pod_context.get("runAsNonRoot") is not True:
                problems.append(f"{where}: may run as root")
        main = pod.get("containers", [])
        for container in main:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if mounts.get("/tmp") not in tmp_volumes:
                problems.append(f"{name}/{container['name']}: no writable emptyDir on /tmp under a read-only root")
    return problems


def _http_probe(container: dict[str, Any], probe: str) -> tuple[str, Any] | None:
    get = container.get(probe, {}).get("httpGet")
    return (get["path"], get["port"]) if get else None


def probe_problems(manifests: list[Manifest]) -> list[str]:
    expected = {
        "worker": {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"},
        "triton": {"livenessProbe": "/v2/health/live", "readinessProbe": "/v2/health/ready", "startupProbe": "/v2/health/live"},
    }
    problems = []
    for comp, probes in expected.items():
        deployment = _one(manifests, "Deployment", comp)
        if deployment is None:
            continue
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        port_names = {p.get("name") for p in container.get("ports", [])}
        for probe, path in probes.items():
            found = _http_probe(container, probe)
            if found is None:
                problems.append(f"{comp}: no HTTP {probe}")
            elif found[0] != path:
                problems.append(f"{comp}: {probe} checks {found[0]}, expected {path}")
            elif isinstance(found[1], str) and found[1] not in port_names:
                problems.append(f"{comp}: {probe} uses port {found[1]!r}, which the container does not declare")
    return problems


def worker_settings(manifests: list[Manifest]) -> dict[str, str]:
    config = _one(manifests, "ConfigMap", "worker")
    return dict(config.get("data", {})) if config else {}


def grace_problems(manifests: list[Manifest]) -> list[str]:
    deployment = _one(manifests, "Deployment", "worker")
    if deployment is None:
        return ["no worker Deployment rendered"]
    drain = float(worker_settings(manifests).get("VCF_WORKER__DRAIN_GRACE_S", "120"))
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= drain:
        return [f"worker terminationGracePeriodSeconds {grace} is not above VCF_WORKER__DRAIN_GRACE_S {drain}: draining workers get SIGKILL"]
    return []


def scaling_problems(manifests: list[Manifest], partitions: int) -> list[str]:
    """Every way the worker count is set stays within the studies topic's partitions."""
    problems = []
    worker = _one(manifests, "Deployment", "worker")
    worker_name = worker["metadata"]["name"] if worker else None
    bounds = []
    for hpa in of_kind(manifests, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == worker_name:
            bounds.append(("HorizontalPodAutoscaler maxReplicas", hpa["spec"]["maxReplicas"]))
    for scaled in of_kind(manifests, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == worker_name:
            bounds.append(("ScaledObject maxReplicaCount", scaled["spec"]["maxReplicaCount"]))
            kafka = [t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"]
            if not kafka:
                problems.append("the worker ScaledObject has no kafka trigger")
            elif kafka[0]["metadata"].get("allowIdleConsumers") != "false":
                problems.append("the worker ScaledObject allows idle consumers beyond the partitions")
    if worker and "replicas" in worker["spec"]:
        bounds.append(("Deployment replicas", worker["spec"]["replicas"]))
    if len([b for b in bounds if not b[0].startswith("Deployment")]) > 1:
        problems.append("the worker is scaled by both an HPA and a ScaledObject")
    for what, value in bounds:
        if value > partitions:
            problems.append(f"worker {what} {value} exceeds the {partitions} partitions of the studies topic")
    return problems


def config_problems(manifests: list[Manifest], known_settings: set[str]) -> list[str]:
    problems = []
    for name in sorted(worker_settings(manifests)):
        if name not in known_settings:
            problems.append(f"ConfigMap sets {name}, which is not a setting of the worker")
        if name.endswith(CREDENTIAL_SUFFIXES):
            problems.append(f"ConfigMap carries the credential {name}")
    for deployment in of_kind(manifests, "Deployment"):
        for container in _containers(deployment["spec"]["template"]["spec"]):
            for env in container.get("env", []):
                if env["name"].endswith(CREDENTIAL_SUFFIXES) and "secretKeyRef" not in env.get("valueFrom", {}):
                    problems.append(f"{deployment['metadata']['name']}: {env['name']} is not read from a Secret")
    for secret in of_kind(manifests, "Secret"):
        problems.append(f"the chart renders Secret {secret['metadata']['name']}: credentials must come from existing Secrets")
    return problems


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pdb_problems(manifests: list[Manifest]) -> list[str]:
    budgets = [p["spec"]["selector"].get("matchLabels", {}) for p in of_kind(manifests, "PodDisruptionBudget")]
    problems = []
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if not any(_selects(selector, labels) for selector in budgets):
            problems.append(f"{deployment['metadata']['name']}: no PodDisruptionBudget selects its pods")
    return problems


def network_problems(manifests: list[Manifest]) -> list[str]:
    policies = of_kind(manifests, "NetworkPolicy")
    if not policies:
        return []
    problems = []
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in policies if _selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)]
        if not covering:
            problems.append(f"{deployment['metadata']['name']}: no NetworkPolicy selects its pods")
            continue
        if not all({"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", [])) for p in covering):
            problems.append(f"{deployment['metadata']['name']}: its NetworkPolicy does not restrict both directions")
    return problems


def dashboard_configmap_problems(manifests: list[Manifest], dashboard_text: str) -> list[str]:
    maps = [m for m in of_kind(manifests, "ConfigMap") if "vcfscreen.json" in m.get("data", {})]
    if not maps:
        return []
    problems = []
    for config in maps:
        if config["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
            problems.append(f"dashboard ConfigMap {config['metadata']['name']} lacks the grafana_dashboard: \"1\" label")
        if config["data"]["vcfscreen.json"].strip() != dashboard_text.strip():
            problems.append(f"dashboard ConfigMap {config['metadata']['name']} differs from dashboards/vcfscreen.json")
    return problems


def all_problems(manifests: list[Manifest], *, partitions: int, known_settings: set[str], dashboard_text: str) -> list[str]:
    return [
        *security_problems(manifests),
        *probe_problems(manifests),
        *grace_problems(manifests),
        *scaling_problems(manifests, partitions),
        *config_problems(manifests, known_settings),
        *pdb_problems(manifests),
        *network_problems(manifests),
        *dashboard_configmap_problems(manifests, dashboard_text),
    ]
