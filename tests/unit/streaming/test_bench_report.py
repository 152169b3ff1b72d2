"""Benchmark and demo figures: percentiles, throughput, the plot and the summary tables."""

from __future__ import annotations

import json
from collections import namedtuple

from rich.console import Console

from streaming.bench import _figures, plot
from streaming.demo_report import findings_table, stage_table
from streaming.sinks import LATENCY_HEADER, STAGES_HEADER

Rec = namedtuple("Rec", "key value headers timestamp")


def test_figures_are_throughput_and_latency_percentiles():
    figures = _figures("run", 4, 7200.0, [1.0, 2.0, 3.0, 10.0], {"infer": [1.0, 3.0]}, ["ok", "ok", "error", "ok"])
    assert figures["studies_per_hour"] == 2.0
    assert figures["latency_p50_s"] == 2.5 and figures["latency_p95_s"] == 8.95
    assert figures["stage_p50_s"] == {"infer": 2.0}
    assert figures["statuses"] == {"error": 1, "ok": 3}


def test_the_plot_is_written(tmp_path):
    runs = [_figures("baseline", 2, 10, [4, 6], {}, ["ok"] * 2), _figures("1 worker", 2, 5, [3, 5], {}, ["ok"] * 2)]
    report = {"runs": runs, "studies": 2, "machine": {"cpus": 2}, "backend": "onnxruntime", "models": "m"}
    path = plot(report, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_tables_read_results_and_headers():
    result = {"status": "ok", "flag": True, "vertebrae": [{"genant_grade": 3}, {"genant_grade": 0}]}
    headers = [(LATENCY_HEADER, b"2500.0"), (STAGES_HEADER, json.dumps({"infer": 2000.0, "queued": 100.0}).encode())]
    records = [Rec(b"1.2", json.dumps(result).encode(), headers, 0)]
    console = Console(record=True, width=120)
    console.print(stage_table(records))
    console.print(findings_table(records))
    text = console.export_text()
    assert "intake to result" in text and "2.50" in text and "2.00" in text
    assert "vertebrae grade 3 (severe, >40%)" in text
    assert "studies flagged" in text


def test_naive_read_reads_every_dicom_file_whole_and_skips_the_rest(study_folders, tmp_path):
    from streaming.bench import naive_read

    folder, uid = study_folders[0]
    datasets = naive_read(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(datasets) == len(files) > 0
    assert all(ds.StudyInstanceUID == uid for ds in datasets)
    assert all("PixelData" in ds for ds in datasets)  # whole files, pixels included
    (folder / "truth.json").write_text("{}")
    try:
        assert len(naive_read(folder)) == len(files)
    finally:
        (folder / "truth.json").unlink()


def test_the_baseline_runs_the_segmenter_over_the_whole_grid(monkeypatch):
    """The naive baseline differs from the core in reading and in the spine region only."""
    from engine.settings import Settings
    from streaming import bench

    seen = {}
    monkeypatch.setattr(bench, "_run_sequential",
                        lambda name, settings, folders, source, read: seen.update(name=name, roi=settings.models.spine_roi_mm, read=read))
    bench.run_baseline(Settings(), [], "file")
    assert seen["roi"] == 0.0 and seen["read"] is bench.naive_read
    bench.run_core_sequential(Settings(), [], "file")
    assert seen["roi"] == Settings().models.spine_roi_mm > 0 and seen["read"] is not bench.naive_read
