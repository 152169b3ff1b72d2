"""The demo's closing summary: throughput, latency per stage, findings by grade, dead letters, where to look."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from engine.settings import Settings
from stack import stackctl
from streaming.sinks import LATENCY_HEADER, STAGES_HEADER, header_map

STAGES = ("queued", "fetch", "load", "preprocess", "infer", "postprocess")


def write_results(results: list, path: Path) -> None:
    """The run's ScreeningResults as JSON lines (what the results topic holds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.value.decode() + "\n" for r in results))


def _p(values, q) -> str:
    return f"{np.percentile(values, q):.2f}" if values else "-"


def stage_table(results: list) -> Table:
    stages: dict[str, list[float]] = {}
    latency = []
    for record in results:
        headers = header_map(record.headers)
        latency.append(float(headers[LATENCY_HEADER]) / 1000.0)
        for stage, ms in json.loads(headers[STAGES_HEADER]).items():
            stages.setdefault(stage, []).append(ms / 1000.0)
    table = Table(title="latency per study, seconds", title_justify="left")
    table.add_column("stage")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    for stage in STAGES:
        if stage in stages:
            table.add_row("waiting between stages" if stage == "queued" else stage,
                          _p(stages[stage], 50), _p(stages[stage], 95))
    table.add_row("[bold]intake to result[/]", _p(latency, 50), _p(latency, 95))
    return table


def findings_table(results: list) -> Table:
    parsed = [json.loads(r.value) for r in results]
    grades = Counter(v["genant_grade"] for p in parsed if p["status"] == "ok" for v in p["vertebrae"])
    statuses = Counter(p["status"] for p in parsed)
    table = Table(title="findings", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for status in ("ok", "not_eligible", "error"):
        table.add_row(f"studies {status}", str(statuses.get(status, 0)))
    table.add_row("studies flagged (a vertebra at the flag grade or above)", str(sum(p["flag"] for p in parsed)))
    for grade, words in ((0, "normal"), (1, "mild, 20-25%"), (2, "moderate, 25-40%"), (3, "severe, >40%")):
        table.add_row(f"vertebrae grade {grade} ({words})", str(grades.get(grade, 0)))
    return table


def print_summary(console: Console, settings: Settings, results: list, letters: list, submitted: int,
                  wall_s: float, key_images: Path, workdir: Path) -> None:
    console.rule("vcfscreen demo: summary")
    rate = 3600.0 * len(results) / wall_s if wall_s > 0 else 0.0
    console.print(f"[bold]{len(results)}[/] of {submitted} studies screened in {wall_s:.0f} s: "
                  f"[bold]{rate:.0f} studies/hour[/] with one worker")
    console.print(stage_table(results))
    console.print(findings_table(results))
    codes = Counter(json.loads(r.value)["code"] for r in letters)
    console.print("dead letters: " + (", ".join(f"{code} {n}" for code, n in sorted(codes.items())) or "none")
                  + " (the malformed event is expected here)")
    prometheus = f"http://{stackctl.HOST}:{stackctl.PORTS['prometheus']['http']}"
    orthanc = f"http://{stackctl.HOST}:{stackctl.PORTS['orthanc']['http']}"
    console.rule("where to look")
    console.print(f"results topic     {settings.kafka.results_topic} (keyed by StudyInstanceUID); "
                  f"this run's lines also in {workdir / 'results.jsonl'}")
    console.print(f"dead-letter topic {settings.kafka.dlq_topic}")
    console.print(f"key images        {key_images}")
    console.print(f"worker log        {workdir / 'worker.log'}")
    console.print(f"Prometheus        {prometheus}  e.g. (the worker has stopped, so over a range):")
    console.print("                  sum by (outcome) (max_over_time(vcfscreen_studies_total[30m]))")
    console.print("                  histogram_quantile(0.95, sum by (le, stage) "
                  "(rate(vcfscreen_stage_duration_seconds_bucket[15m])))")
    console.print(f"Orthanc           {orthanc} (DICOMweb at {orthanc}/dicom-web)")
    console.print("the stack stays up: stop it with `make stack-down` "
                  "(or `python3 -m stack.stackctl down`)")
