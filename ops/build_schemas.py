"""Build the JSON schemas kubeconform validates the chart against, offline.

Sources, all from the Go module proxy through ``go mod download`` (cached in the module cache
after the first run), at the versions pinned in ``ops/versions.env``:

- ``k8s.io/kubernetes``: ``api/openapi-spec/swagger.json`` -> every built-in kind;
- ``github.com/kedacore/keda/v2``: ``config/crd/bases/*.yaml`` -> ScaledObject, TriggerAuthentication, ...;
- ``github.com/prometheus-operator/prometheus-operator``: ``example/prometheus-operator-crd/*.yaml``
  -> ServiceMonitor, PrometheusRule, ...

Usage: ``python -m ops.build_schemas [--out DIR]``; prints the schema folder. A second run
with the same pins and the same converter returns at once (a stamp file records both).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from ops import jsonschema_convert as convert

ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = ROOT / "ops" / "versions.env"
DEFAULT_OUT = ROOT / ".stack" / "ops" / "schemas"
STAMP = ".built-from"


class SchemaBuildError(RuntimeError):
    pass


class _CrdLoader(yaml.SafeLoader):
    """PyYAML reads a bare ``=`` (an enum value in Prometheus-operator CRDs: relabel actions)
    as YAML 1.1's obsolete "value" type and refuses it; Go's YAML reads it as a string."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=VALUE lines of ops/versions.env (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise SchemaBuildError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        values[key] = value.strip().strip('"')
    return values


def module_dir(module: str, version: str) -> Path:
    """The extracted module in the Go module cache (downloaded from the proxy if absent)."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        proc = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            cwd=outside_any_module, capture_output=True, text=True, check=False,
        )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or "Dir" not in info:
        detail = info.get("Error") or proc.stderr.strip() or proc.stdout.strip()
        raise SchemaBuildError(f"go mod download {module}@{version} failed: {detail}")
    return Path(info["Dir"])


def _fingerprint(versions: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for key in ("K8S_VERSION", "KEDA_MODULE", "KEDA_VERSION", "PROMETHEUS_OPERATOR_MODULE", "PROMETHEUS_OPERATOR_VERSION"):
        digest.update(f"{key}={versions[key]}\n".encode())
    digest.update(Path(convert.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def crd_files(module_root: Path, folder: str) -> list[Path]:
    files = sorted((module_root / folder).glob("*.yaml"))
    if not files:
        raise SchemaBuildError(f"no CRD YAML under {module_root / folder}: has the module's layout changed?")
    return files


def build(out: Path, versions: dict[str, str]) -> tuple[Path, int]:
    """Write every schema under ``out/<K8S_VERSION>``; returns (folder, number of files)."""
    target = out / versions["K8S_VERSION"]
    stamp = target / STAMP
    fingerprint = _fingerprint(versions)
    if stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return target, sum(1 for _ in target.rglob("*.json"))

    swagger_file = module_dir("k8s.io/kubernetes", versions["K8S_VERSION"]) / "api" / "openapi-spec" / "swagger.json"
    swagger = json.loads(swagger_file.read_text())
    schemas = convert.kubernetes_schemas(swagger)
    sources = [
        (versions["KEDA_MODULE"], versions["KEDA_VERSION"], "config/crd/bases"),
        (versions["PROMETHEUS_OPERATOR_MODULE"], versions["PROMETHEUS_OPERATOR_VERSION"], "example/prometheus-operator-crd"),
    ]
    for module, version, folder in sources:
        for path in crd_files(module_dir(module, version), folder):
            for document in yaml.load_all(path.read_text(), Loader=_CrdLoader):
                if document and document.get("kind") == "CustomResourceDefinition":
                    schemas.update(convert.crd_schemas(document, swagger["definitions"]))

    for relative, schema in schemas.items():
        file = target / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    stamp.write_text(fingerprint + "\n")
    return target, len(schemas)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parent folder of the schema sets")
    args = parser.parse_args(argv)
    try:
        folder, count = build(args.out, read_versions())
    except SchemaBuildError as exc:
        print(f"build_schemas: {exc}", file=sys.stderr)
        return 1
    print(f"build_schemas: {count} schemas in {folder}", file=sys.stderr)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
