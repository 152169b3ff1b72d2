"""The chart's files stay true to the code: documented values, known settings, sizing files,
pinned tool versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ops import values_schema
from ops.build_schemas import SchemaBuildError, read_versions
from ops.chart_settings import (
    CREDENTIAL_ENV,
    all_env_names,
    read_settings_file,
    secret_env_names,
    settings_file_text,
)
from ops.values_doc import uncommented_values

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "vcfscreen"


def test_every_value_has_a_comment_above_it():
    assert uncommented_values((CHART / "values.yaml").read_text()) == []


def test_uncommented_values_finds_nested_keys_and_ignores_list_items():
    text = (
        "# top\n"
        "a:\n"
        "  # b\n"
        "  b: 1\n"
        "  c: 2\n"
        "# list\n"
        "tolerations:\n"
        "  - key: x\n"
        "    operator: Exists\n"
        "d:\n"
        "  # e\n"
        "  e: {}\n"
    )
    assert uncommented_values(text) == ["a.c", "d"]


def test_settings_file_is_generated_from_engine_settings():
    # Regenerate with: python -m ops.chart_settings --write
    assert (CHART / "files" / "settings-env.txt").read_text() == settings_file_text()
    known = set(read_settings_file())
    assert "VCF_WORKER__DRAIN_GRACE_S" in known and "VCF_PREPROCESS__MAX_SHAPE" in known
    assert known.isdisjoint(CREDENTIAL_ENV)
    assert known | set(CREDENTIAL_ENV) == set(all_env_names())


def test_every_secret_setting_is_delivered_from_a_secret():
    assert set(secret_env_names()) <= set(CREDENTIAL_ENV)
    configmap = (CHART / "templates" / "configmap.yaml").read_text()
    deployment = (CHART / "templates" / "worker-deployment.yaml").read_text()
    for name in CREDENTIAL_ENV:
        assert f'"{name}"' in configmap, f"configmap.yaml does not refuse {name} in config"
        assert f"- name: {name}\n              valueFrom:\n                secretKeyRef:" in deployment


def _values(name: str) -> dict:
    return yaml.safe_load((CHART / "ci" / name).read_text())


@pytest.mark.parametrize("name", ["small-values.yaml", "large-values.yaml"])
def test_sizing_files_keep_workers_within_partitions(name):
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    values = _values(name)
    partitions = values["kafka"]["partitions"]
    autoscaling = {**defaults["worker"]["autoscaling"], **values.get("worker", {}).get("autoscaling", {})}
    maximum = autoscaling["maxReplicas"] or partitions
    assert autoscaling["minReplicas"] <= maximum <= partitions


def test_large_values_exercise_keda_and_the_prometheus_operator():
    large = _values("large-values.yaml")
    assert large["worker"]["keda"]["enabled"] is True
    assert large["monitoring"]["serviceMonitor"]["enabled"] is True
    assert large["monitoring"]["prometheusRule"]["enabled"] is True
    assert large["triton"]["autoscaling"]["enabled"] is True
    assert large["kafka"]["partitions"] > _values("small-values.yaml")["kafka"]["partitions"]


def test_dashboard_file_is_grafana_json_with_the_sidecar_label_in_values():
    dashboard = json.loads((CHART / "dashboards" / "vcfscreen.json").read_text())
    assert dashboard["uid"] == "vcfscreen" and dashboard["panels"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["monitoring"]["grafanaDashboard"]["labels"] == {"grafana_dashboard": "1"}
    assert '.Files.Get "dashboards/vcfscreen.json"' in (CHART / "templates" / "dashboard-configmap.yaml").read_text()


def test_versions_are_pinned(tmp_path):
    versions = read_versions()
    for key in ("HELM_VERSION", "KUBECONFORM_VERSION", "K8S_VERSION", "KEDA_VERSION", "PROMETHEUS_OPERATOR_VERSION"):
        assert versions[key].startswith("v") and versions[key].count(".") == 2, key
    bad = tmp_path / "versions.env"
    bad.write_text("# comment\nHELM_VERSION v3\n")
    with pytest.raises(SchemaBuildError, match=r"versions.env:2: expected KEY=VALUE"):
        read_versions(bad)


def test_values_schema_is_generated_from_values_yaml():
    # Regenerate with: python -m ops.values_schema --write
    assert (CHART / "values.schema.json").read_text() == values_schema.schema_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    kafka = schema["properties"]["kafka"]
    assert kafka["additionalProperties"] is False
    assert kafka["properties"]["partitions"] == {"type": "integer", "minimum": 1}
    assert schema["properties"]["config"] == {"type": "object"}  # free-form: checked by the template


def test_values_schema_exceptions_name_real_values():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def exists(path: str) -> bool:
        node = defaults
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    stale = [p for p in (*values_schema.FREE_FORM, *values_schema.FRACTIONAL, *values_schema.CONSTRAINTS) if not exists(p)]
    assert stale == []
