"""The promises the chart checks on its rendered manifests, each shown to catch its violation."""

from __future__ import annotations

import copy

import pytest

from ops.manifest_checks import (
    all_problems,
    config_problems,
    dashboard_configmap_problems,
    grace_problems,
    network_problems,
    pdb_problems,
    probe_problems,
    scaling_problems,
    security_problems,
)

SAFE = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
WORKER_LABELS = {"app.kubernetes.io/instance": "r", "app.kubernetes.io/component": "worker"}


def _probe(path: str) -> dict:
    return {"httpGet": {"path": path, "port": "metrics"}}


def manifests() -> list[dict]:
    return [
        {"kind": "ConfigMap", "metadata": {"name": "r-worker", "labels": {"app.kubernetes.io/component": "worker"}},
         "data": {"VCF_WORKER__DRAIN_GRACE_S": "120", "VCF_KAFKA__GROUP_ID": "g"}},
        {"kind": "ConfigMap", "metadata": {"name": "r-dashboard", "labels": {"grafana_dashboard": "1"}},
         "data": {"vcfscreen.json": '{"panels": []}'}},
        {"kind": "Deployment", "metadata": {"name": "r-worker", "labels": {"app.kubernetes.io/component": "worker"}},
         "spec": {"replicas": 2, "template": {"metadata": {"labels": dict(WORKER_LABELS)}, "spec": {
             "automountServiceAccountToken": False,
             "terminationGracePeriodSeconds": 150,
             "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
             "volumes": [{"name": "tmp", "emptyDir": {}}],
             "containers": [{
                 "name": "worker", "ports": [{"name": "metrics", "containerPort": 9400}],
                 "securityContext": dict(SAFE),
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                 "livenessProbe": _probe("/healthz"), "readinessProbe": _probe("/readyz"), "startupProbe": _probe("/healthz"),
                 "env": [{"name": "VCF_PACS__PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pacs", "key": "password"}}}],
             }],
         }}}},
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "r-worker"},
         "spec": {"scaleTargetRef": {"name": "r-worker"}, "maxReplicas": 6}},
        {"kind": "PodDisruptionBudget", "metadata": {"name": "r-worker"}, "spec": {"selector": {"matchLabels": dict(WORKER_LABELS)}}},
        {"kind": "NetworkPolicy", "metadata": {"name": "r-worker"},
         "spec": {"podSelector": {"matchLabels": dict(WORKER_LABELS)}, "policyTypes": ["Ingress", "Egress"]}},
    ]


def _worker(ms: list[dict]) -> dict:
    return next(m for m in ms if m["kind"] == "Deployment")


def _container(ms: list[dict]) -> dict:
    return _worker(ms)["spec"]["template"]["spec"]["containers"][0]


def test_a_correct_release_has_no_problem():
    assert all_problems(manifests(), partitions=6, known_settings={"VCF_WORKER__DRAIN_GRACE_S", "VCF_KAFKA__GROUP_ID"},
                        dashboard_text='{"panels": []}') == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation is not false"),
        (lambda c: c["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem is not true"),
        (lambda c: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "capabilities do not drop ALL"),
        (lambda c: c.update(volumeMounts=[]), "no writable emptyDir on /tmp"),
    ],
)
def test_security_problems(mutate, expected):
    ms = manifests()
    mutate(_container(ms))
    assert any(expected in p for p in security_problems(ms))


def test_pod_level_security_problems():
    ms = manifests()
    _worker(ms)["spec"]["template"]["spec"]["securityContext"] = {}
    _worker(ms)["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    problems = security_problems(ms)
    assert "r-worker: pod securityContext.runAsNonRoot is not true" in problems
    assert "r-worker: pod seccompProfile is not RuntimeDefault" in problems
    assert any("service-account token" in p for p in problems)


def test_probe_problems():
    ms = manifests()
    _container(ms)["readinessProbe"] = _probe("/healthz")
    del _container(ms)["livenessProbe"]
    _container(ms)["startupProbe"]["httpGet"]["port"] = "http"
    assert probe_problems(ms) == [
        "worker: no HTTP livenessProbe",
        "worker: readinessProbe checks /healthz, expected /readyz",
        "worker: startupProbe uses port 'http', which the container does not declare",
    ]


def test_grace_must_exceed_the_drain():
    ms = manifests()
    _worker(ms)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 120
    assert grace_problems(ms) == [
        "worker terminationGracePeriodSeconds 120 is not above VCF_WORKER__DRAIN_GRACE_S 120.0: draining workers get SIGKILL"
    ]


def test_scaling_never_beyond_partitions():
    ms = manifests()
    assert scaling_problems(ms, partitions=4) == [
        "worker HorizontalPodAutoscaler maxReplicas 6 exceeds the 4 partitions of the studies topic"
    ]
    ms.append({"kind": "ScaledObject", "metadata": {"name": "r-worker"}, "spec": {
        "scaleTargetRef": {"name": "r-worker"}, "maxReplicaCount": 6,
        "triggers": [{"type": "kafka", "metadata": {"allowIdleConsumers": "true"}}]}})
    problems = scaling_problems(ms, partitions=6)
    assert "the worker ScaledObject allows idle consumers beyond the partitions" in problems
    assert "the worker is scaled by both an HPA and a ScaledObject" in problems


def test_config_problems():
    ms = manifests()
    ms[0]["data"]["VCF_WORKER__MAX_INFLIGHT"] = "3"
    ms[0]["data"]["VCF_KAFKA__SASL_PASSWORD"] = "x"
    _container(ms)["env"].append({"name": "VCF_PACS__USERNAME", "value": "radiology"})
    ms.append({"kind": "Secret", "metadata": {"name": "r-creds"}})
    problems = config_problems(ms, {"VCF_WORKER__DRAIN_GRACE_S", "VCF_KAFKA__GROUP_ID", "VCF_KAFKA__SASL_PASSWORD"})
    assert problems == [
        "ConfigMap carries the credential VCF_KAFKA__SASL_PASSWORD",
        "ConfigMap sets VCF_WORKER__MAX_INFLIGHT, which is not a setting of the worker",
        "r-worker: VCF_PACS__USERNAME is not read from a Secret",
        "the chart renders Secret r-creds: credentials must come from existing Secrets",
    ]


def test_pdb_and_network_policy_must_select_the_pods():
    ms = manifests()
    ms[4]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "triton"
    ms[5]["spec"]["policyTypes"] = ["Ingress"]
    assert pdb_problems(ms) == ["r-worker: no PodDisruptionBudget selects its pods"]
    assert network_problems(ms) == ["r-worker: its NetworkPolicy does not restrict both directions"]


def test_dashboard_configmap_must_carry_the_label_and_the_file():
    ms = copy.deepcopy(manifests())
    ms[1]["metadata"]["labels"] = {}
    problems = dashboard_configmap_problems(ms, '{"panels": [1]}')
    assert problems == [
        'dashboard ConfigMap r-dashboard lacks the grafana_dashboard: "1" label',
        "dashboard ConfigMap r-dashboard differs from dashboards/vcfscreen.json",
    ]
