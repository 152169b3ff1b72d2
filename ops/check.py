"""Every offline check of the Helm chart, its alert rules and its dashboard (``make ops-check``).

1. ``helm lint --strict`` of the default, small and large values;
2. ``helm template`` of each (plus Triton's External-metric HPA), validated by
   ``kubeconform -strict`` against schemas built from the pinned Kubernetes and CRD sources
   (ops/build_schemas.py); a misspelt field is shown to fail, so strictness is in force;
3. the chart's promises on the rendered manifests (ops/manifest_checks.py) and the worker's
   own settings model reading the rendered ConfigMap;
4. installs the chart must refuse (too many workers for the partitions, unknown or secret
   settings, SIGKILL before the drain ends, ...) fail with a message naming the value;
5. ``promtool check rules`` and ``promtool test rules`` (ops/rules-tests.yaml) on the rules
   the chart renders, and ``promtool check rules`` on KEDA's Prometheus queries; every metric
   they read is one something exports;
6. the dashboard: valid JSON, every query valid PromQL (promtool), every metric it queries
   exported by the worker or Triton.

Needs the tools of ``make ops-tools`` (helm, kubeconform in .stack/tools) and promtool
(Debian's prometheus package). Ends with "ops-check: N passed, M failed".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from ops import build_schemas, manifest_checks
from ops.chart_settings import read_settings_file
from ops.jsonschema_convert import KUBECONFORM_TEMPLATE
from ops.metric_catalog import (
    dashboard_problems,
    dashboard_queries,
    known_metric_names,
    rules_problems,
)

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "vcfscreen"
RULES_TESTS = ROOT / "ops" / "rules-tests.yaml"
RELEASE = NAMESPACE = "vcfscreen"  # ops/rules-tests.yaml is written for these names
# Grafana's variables as Grafana substitutes them, so the queries can be parsed by promtool.
GRAFANA_VARIABLES = {"${datasource}": "", "$__rate_interval": "1m", "$__range": "5m", "$namespace": ".*"}

# name -> (values files, --set flags, partitions the render must respect)
RENDERS: dict[str, tuple[list[str], list[str], int]] = {
    "default": ([], [], 6),
    "small": (["ci/small-values.yaml"], [], 4),
    "large": (["ci/large-values.yaml"], [], 48),
    "large-external-hpa": (["ci/large-values.yaml"], ["triton.autoscaling.mode=external", "worker.keda.enabled=false"], 48),
}

# --set flags that must make the install fail, and a fragment of the message it must give.
MUST_FAIL: dict[str, tuple[list[str], str]] = {
    "maxReplicas above partitions": (["kafka.partitions=4", "worker.autoscaling.maxReplicas=5"], "maxReplicas is 5 but the topic ct.studies has kafka.partitions=4"),
    "replicas above partitions": (["kafka.partitions=2", "worker.autoscaling.enabled=false", "worker.replicas=3"], "worker.replicas is 3"),
    "KEDA above partitions": (["kafka.partitions=3", "worker.keda.enabled=true", "worker.autoscaling.maxReplicas=8"], "kafka.partitions=3"),
    "unknown setting in config": (["config.VCF_WORKER__MAX_INFLIGHT=3"], "config.VCF_WORKER__MAX_INFLIGHT is not a setting"),
    "credential in config": (["config.VCF_PACS__PASSWORD=hunter2"], "config.VCF_PACS__PASSWORD is a credential"),
    "SIGKILL before the drain ends": (["worker.drainGraceSeconds=300", "worker.terminationGracePeriodSeconds=200"], "must be greater than worker.drainGraceSeconds 300"),
    "SASL without a Secret": (["kafka.securityProtocol=SASL_SSL"], "kafka.sasl.existingSecret"),
    "model repository PVC unnamed": (["triton.modelRepository.source=pvc"], "triton.modelRepository.pvc.claimName"),
    "misspelt value (values.schema.json)": (["kafka.partitons=4"], "additional properties 'partitons' not allowed"),
    "wrong value type (values.schema.json)": (["worker.keda.enabled=yes please"], "/worker/keda/enabled"),
}


class CheckFailed(Exception):
    pass


def run(cmd: list[str], *, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


class Checker:
    def __init__(self, tools: Path, work: Path):
        self.helm = str(tools / "helm")
        self.kubeconform = str(tools / "kubeconform")
        self.promtool = shutil.which("promtool") or "/usr/bin/promtool"
        self.work = work
        self.versions = build_schemas.read_versions()
        self.kube_version = self.versions["K8S_VERSION"].lstrip("v")
        self.schemas: Path | None = None
        self.rendered: dict[str, list[dict]] = {}
        self.results: list[tuple[str, bool, str]] = []

    def step(self, name: str, fn: Callable[[], str | None]) -> None:
        start = time.monotonic()
        try:
            detail = fn() or ""
            self.results.append((name, True, detail))
            print(f"ok    {name} ({time.monotonic() - start:.1f} s){': ' + detail if detail else ''}", flush=True)
        except CheckFailed as exc:
            self.results.append((name, False, str(exc)))
            print(f"FAIL  {name}\n      " + str(exc).replace("\n", "\n      "), flush=True)

    # --- tools and schemas -------------------------------------------------------------------
    def tools_present(self) -> str:
        missing = [t for t in (self.helm, self.kubeconform, self.promtool) if not os.access(t, os.X_OK)]
        if missing:
            raise CheckFailed(f"missing {', '.join(missing)}: run `make ops-tools` (promtool: apt-get install prometheus)")
        return run([self.helm, "version", "--short"]).stdout.strip()

    def build_schemas(self) -> str:
        try:
            self.schemas, count = build_schemas.build(build_schemas.DEFAULT_OUT, self.versions)
        except (build_schemas.SchemaBuildError, KeyError, ValueError) as exc:
            raise CheckFailed(str(exc)) from exc
        return f"{count} schemas for Kubernetes {self.kube_version}, KEDA {self.versions['KEDA_VERSION']}, prometheus-operator {self.versions['PROMETHEUS_OPERATOR_VERSION']}"

    # --- helm --------------------------------------------------------------------------------
    def template(self, values: list[str], sets: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", self.kube_version]
        for file in values:
            cmd += ["-f", str(CHART / file)]
        for flag in sets:
            cmd += ["--set", flag]
        return run(cmd, check=check)

    def lint(self) -> str:
        for values, sets, _ in RENDERS.values():
            cmd = [self.helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--kube-version", self.kube_version]
            for file in values:
                cmd += ["-f", str(CHART / file)]
            for flag in sets:
                cmd += ["--set", flag]
            run(cmd)
        return f"{len(RENDERS)} value sets"

    def render_and_validate(self, name: str) -> str:
        values, sets, _ = RENDERS[name]
        text = self.template(values, sets).stdout
        out = self.work / f"{name}.yaml"
        out.write_text(text)
        self.rendered[name] = [doc for doc in yaml.safe_load_all(text) if doc]
        kinds = sorted({doc["kind"] for doc in self.rendered[name]})
        self.kubeconform_file(out, expect_valid=True)
        return f"{len(self.rendered[name])} objects valid ({', '.join(kinds)})"

    def kubeconform_file(self, path: Path, *, expect_valid: bool) -> str:
        if self.schemas is None:
            raise CheckFailed("the schemas were not built")
        location = f"{self.schemas}/{KUBECONFORM_TEMPLATE}"
        proc = run([self.kubeconform, "-strict", "-summary", "-output", "json", "-schema-location", location, str(path)], check=False)
        try:
            summary = json.loads(proc.stdout)["summary"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckFailed(f"kubeconform gave no summary for {path.name}: {proc.stdout[-500:]} {proc.stderr[-500:]}") from exc
        clean = proc.returncode == 0 and summary["invalid"] == summary["errors"] == summary["skipped"] == 0
        if expect_valid and not clean:
            raise CheckFailed(f"kubeconform on {path.name}: {summary}\n{proc.stdout[-3000:]}")
        if not expect_valid and summary["invalid"] == 0:
            raise CheckFailed(f"kubeconform accepted {path.name}, which has a misspelt field: the schemas are not strict")
        return str(summary)

    def strictness(self) -> str:
        """A misspelt field in a built-in kind and in a CRD kind must both be rejected."""
        large = self.rendered.get("large")
        if not large:
            raise CheckFailed("the large render is needed first")
        checked = []
        for kind, mutate in (
            ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinessprobe={})),
            ("ScaledObject", lambda d: d["spec"].update(maxReplicas=3)),
            ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].update(summary="x")),
            ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(intervall="30s")),
        ):
            doc = copy.deepcopy(next(d for d in large if d["kind"] == kind))
            control = self.work / f"control-{kind.lower()}.yaml"
            control.write_text(yaml.safe_dump(doc))
            self.kubeconform_file(control, expect_valid=True)  # the same object, unmisspelt, passes
            mutate(doc)
            path = self.work / f"misspelt-{kind.lower()}.yaml"
            path.write_text(yaml.safe_dump(doc))
            self.kubeconform_file(path, expect_valid=False)
            checked.append(kind)
        return f"misspelt fields rejected in {', '.join(checked)}"

    def promises(self) -> str:
        known = set(read_settings_file())
        dashboard = (CHART / "dashboards" / "vcfscreen.json").read_text()
        problems = []
        for name, (_, _, partitions) in RENDERS.items():
            for problem in manifest_checks.all_problems(self.rendered[name], partitions=partitions, known_settings=known, dashboard_text=dashboard):
                problems.append(f"{name}: {problem}")
        if problems:
            raise CheckFailed("\n".join(problems))
        return "security contexts, probes, drain, partitions, credentials, PDBs, NetworkPolicies"

    def worker_reads_config(self) -> str:
        """The worker's own settings model accepts every rendered ConfigMap."""
        for name in RENDERS:
            env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_")}
            env.update(manifest_checks.worker_settings(self.rendered[name]))
            code = "from engine.settings import Settings, as_env_lines; print('\\n'.join(as_env_lines(Settings())))"
            proc = run([sys.executable, "-c", code], check=False, env=env, cwd=ROOT)
            if proc.returncode != 0:
                raise CheckFailed(f"{name}: engine.settings.Settings() rejects the chart's ConfigMap:\n{proc.stderr.strip()[-2000:]}")
        return f"{len(RENDERS)} ConfigMaps parsed by engine.settings.Settings"

    def refusals(self) -> str:
        for what, (sets, fragment) in MUST_FAIL.items():
            proc = self.template([], sets, check=False)
            if proc.returncode == 0:
                raise CheckFailed(f"{what}: helm template --set {' '.join(sets)} succeeded; it must fail")
            if fragment not in proc.stderr:
                raise CheckFailed(f"{what}: the error does not say {fragment!r}:\n{proc.stderr.strip()}")
        return f"{len(MUST_FAIL)} misconfigurations refused with their reason"

    # --- rules and dashboard -----------------------------------------------------------------
    def rules(self) -> str:
        checked = 0
        for name in ("small", "large"):
            rules = [d for d in self.rendered[name] if d["kind"] == "PrometheusRule"]
            if len(rules) != 1:
                raise CheckFailed(f"{name}: expected one PrometheusRule, found {len(rules)}")
            folder = self.work / f"rules-{name}"
            folder.mkdir(exist_ok=True)
            rule_file = folder / "vcfscreen-rules.yaml"
            rule_file.write_text(yaml.safe_dump(rules[0]["spec"], sort_keys=False))
            run([self.promtool, "check", "rules", str(rule_file)])
            problems = rules_problems(rules[0]["spec"], known_metric_names())
            if problems:
                raise CheckFailed(f"{name}: " + "\n".join(problems))
            checked += 1
        # The unit tests are written for the default thresholds, which the small values keep.
        folder = self.work / "rules-small"
        shutil.copy(RULES_TESTS, folder / RULES_TESTS.name)
        proc = run([self.promtool, "test", "rules", str(folder / RULES_TESTS.name)], check=False)
        if proc.returncode != 0:
            raise CheckFailed(f"promtool test rules failed:\n{(proc.stdout + proc.stderr).strip()[-4000:]}")
        return f"promtool check rules on {checked} renders; promtool test rules passed"

    def scaling_queries(self) -> str:
        """KEDA's Prometheus trigger queries parse (promtool, as recording rules) and read known metrics."""
        queries = [
            trigger["metadata"]["query"]
            for doc in self.rendered["large"] if doc["kind"] == "ScaledObject"
            for trigger in doc["spec"]["triggers"] if trigger["type"] == "prometheus"
        ]
        if not queries:
            raise CheckFailed("the large values render no ScaledObject with a prometheus trigger")
        rules = {"groups": [{"name": "keda-queries", "rules": [
            {"record": f"vcfscreen:keda_query_{i}", "expr": query} for i, query in enumerate(queries)]}]}
        rule_file = self.work / "keda-queries.yaml"
        rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
        run([self.promtool, "check", "rules", str(rule_file)])
        problems = rules_problems(rules, known_metric_names())
        if problems:
            raise CheckFailed("\n".join(problems))
        return f"{len(queries)} KEDA Prometheus queries parse and read exported metrics"

    def dashboard(self) -> str:
        path = CHART / "dashboards" / "vcfscreen.json"
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckFailed(f"{path} is not JSON: {exc}") from exc
        problems = dashboard_problems(dashboard, known_metric_names())
        if problems:
            raise CheckFailed("\n".join(problems))
        # Every panel query is valid PromQL: promtool parses it as a recording rule, with
        # Grafana's variables replaced by what Grafana would send.
        exprs = [expr for _, expr, _ in dashboard_queries(dashboard) if not expr.lstrip().startswith("label_values(")]
        for variable, value in GRAFANA_VARIABLES.items():
            exprs = [expr.replace(variable, value) for expr in exprs]
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"vcfscreen:dashboard_query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
        rule_file = self.work / "dashboard-queries.yaml"
        rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
        run([self.promtool, "check", "rules", str(rule_file)])
        return f"{len(dashboard['panels'])} panels, {len(exprs)} queries parse (promtool), every metric exported"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Offline checks of the Helm chart, alert rules and dashboard.")
    parser.add_argument("--tools", type=Path, default=Path(os.environ.get("OPS_TOOLS_DIR", ROOT / ".stack" / "tools")))
    parser.add_argument("--keep", type=Path, help="write the renders here instead of a temporary folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ops-check-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        checker = Checker(args.tools, work)
        checker.step("tools", checker.tools_present)
        if checker.results[-1][1]:
            checker.step("schemas", checker.build_schemas)
            checker.step("helm lint", checker.lint)
            for name in RENDERS:
                checker.step(f"helm template + kubeconform: {name}", lambda n=name: checker.render_and_validate(n))
            if all(ok for _, ok, _ in checker.results):
                checker.step("schemas are strict", checker.strictness)
                checker.step("chart promises", checker.promises)
                checker.step("worker reads the ConfigMaps", checker.worker_reads_config)
                checker.step("rules: promtool", checker.rules)
                checker.step("scaling queries: promtool", checker.scaling_queries)
            checker.step("misconfigurations refused", checker.refusals)
        checker.step("dashboard", checker.dashboard)
    passed = sum(ok for _, ok, _ in checker.results)
    failed = len(checker.results) - passed
    print(f"ops-check: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
