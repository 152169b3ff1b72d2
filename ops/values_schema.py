"""The chart's ``values.schema.json``, derived from ``values.yaml``.

Helm validates every install, upgrade, lint and template against it, so a misspelt value
(``kafka.partitons``) or a wrong type (``replicas: "two"``) fails at once instead of being
ignored. Types come from the defaults; maps meant to be free-form (labels, resources,
affinity, ``config``) stay open; a few values get the enum or minimum they need.

Usage: ``python -m ops.values_schema --write`` regenerates the file (a unit test keeps it in step).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "vcfscreen"
VALUES_FILE = CHART / "values.yaml"
SCHEMA_FILE = CHART / "values.schema.json"

# Maps whose keys are the user's (Kubernetes objects or label sets): any content.
FREE_FORM = frozenset({
    "commonLabels", "serviceAccount.annotations", "config", "monitoring.labels",
    "monitoring.grafanaDashboard.labels", "monitoring.grafanaDashboard.annotations",
    *(f"{c}.{k}" for c in ("worker", "triton") for k in ("resources", "podAnnotations", "podLabels", "nodeSelector", "affinity")),
})
# Numbers that may have a fraction although their default is whole.
FRACTIONAL = frozenset({"worker.drainGraceSeconds", "triton.autoscaling.targetQueueMicroseconds"})
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "kafka.partitions": {"minimum": 1},
    "kafka.securityProtocol": {"enum": ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]},
    "kafka.sasl.mechanism": {"enum": ["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]},
    "worker.replicas": {"minimum": 0},
    "worker.autoscaling.minReplicas": {"minimum": 1},
    "worker.autoscaling.maxReplicas": {"minimum": 0},
    "worker.drainGraceSeconds": {"minimum": 0},
    "worker.keda.lagThreshold": {"minimum": 1},
    "triton.gpusPerPod": {"minimum": 0},
    "triton.modelRepository.source": {"enum": ["pvc", "image"]},
    "triton.autoscaling.mode": {"enum": ["keda", "external"]},
    "models.backend": {"enum": ["", "onnxruntime", "triton"]},
    "logging.level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
}


def schema_of(value: Any, path: str = "") -> dict[str, Any]:
    """The schema of one value (``path`` is its dotted name, for the exceptions above)."""
    if path in FREE_FORM:
        node: dict[str, Any] = {"type": "object"}
    elif isinstance(value, dict):
        node = {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: schema_of(sub, f"{path}.{key}" if path else key) for key, sub in value.items()},
        }
    elif isinstance(value, bool):
        node = {"type": "boolean"}
    elif isinstance(value, int):
        node = {"type": "number" if path in FRACTIONAL else "integer"}
    elif isinstance(value, float):
        node = {"type": "number"}
    elif isinstance(value, str):
        node = {"type": "string"}
    elif isinstance(value, list):
        node = {"type": "array"}
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            node["items"] = {"type": "integer"}
        elif value and all(isinstance(v, str) for v in value):
            node["items"] = {"type": "string"}
    else:
        node = {}
    node.update(CONSTRAINTS.get(path, {}))
    return node


def build_schema(values: dict[str, Any]) -> dict[str, Any]:
    schema = schema_of(values)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": "vcfscreen chart values", **schema}


def schema_text() -> str:
    return json.dumps(build_schema(yaml.safe_load(VALUES_FILE.read_text())), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check the chart's values.schema.json.")
    parser.add_argument("--write", action="store_true", help="regenerate the file instead of checking it")
    args = parser.parse_args(argv)
    if args.write:
        SCHEMA_FILE.write_text(schema_text())
        print(f"wrote {SCHEMA_FILE}")
        return 0
    if not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text() != schema_text():
        print(f"{SCHEMA_FILE} is out of date with values.yaml: run python -m ops.values_schema --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
