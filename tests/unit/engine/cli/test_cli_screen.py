"""``vcfscreen screen`` on real DICOM folders, with stand-in models (no trained files needed)."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

import engine.screen
from engine.cli import app
from engine.cli.screen_cmd import UsageError, discover_studies
from engine.results import ScreeningResult
from tests.unit.engine.report.report_spine_study import (
    IntensityBackend,
    spine_volume,
    write_spine_series,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """``root/`` holds three study folders (fractured, scoliotic, broken); ``single`` is one more."""
    root = tmp_path_factory.mktemp("studies")
    fractured = spine_volume(wedge_level="L1", loss=0.6)
    write_spine_series(fractured, root / "a_fractured")
    (root / "a_fractured" / "truth.json").write_text("{}")
    write_spine_series(spine_volume(lateral_shift=6.0), root / "b_scoliotic")
    broken = root / "c_broken"
    broken.mkdir()
    (broken / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"not a dataset")
    (root / ".hidden").mkdir()
    single = write_spine_series(spine_volume(), tmp_path_factory.mktemp("single") / "study")
    return {"root": root, "single": single, "fractured_uid": fractured.study_uid}


@pytest.fixture(autouse=True)
def restore_logging():
    """The command configures root logging for its run; put it back for the next tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def stand_in(monkeypatch):
    """The screener's backend is the stand-in models."""
    # The fracture head confirms every crop and grades none: the grades are the measured ones.
    monkeypatch.setattr(engine.screen, "make_backend", lambda settings: IntensityBackend(confirm_all=True))


def _lines(text: str) -> list[ScreeningResult]:
    return [ScreeningResult.from_json(line) for line in text.splitlines() if line.strip()]


def test_one_line_per_study_in_order_and_a_broken_study_does_not_stop_the_run(studies, stand_in, tmp_path):
    out = tmp_path / "results.jsonl"
    keys, srs = tmp_path / "keys", tmp_path / "sr"
    result = runner.invoke(app, ["screen", str(studies["root"]), str(studies["single"]), "--out", str(out),
                                 "--key-images", str(keys), "--sr", str(srs)])
    assert result.exit_code == 0, result.output
    lines = _lines(out.read_text())
    assert [r.status for r in lines] == ["ok", "ok", "error", "ok"]
    fractured, scoliotic, broken, _ = lines
    assert fractured.study_instance_uid == studies["fractured_uid"]
    assert fractured.flag and fractured.max_genant_grade == 3
    assert {v.level for v in fractured.vertebrae if v.genant_grade == 3} == {"L1"}
    assert not scoliotic.flag and len(scoliotic.vertebrae) == 10
    assert broken.study_instance_uid == "c_broken" and broken.reason.startswith("corrupt: ")
    ok = [r for r in lines if r.status == "ok"]
    assert sorted(p.stem for p in keys.glob("*.png")) == sorted(r.study_instance_uid for r in ok)
    assert sorted(p.stem for p in srs.glob("*.dcm")) == sorted(r.study_instance_uid for r in ok)
    sr = pydicom.dcmread(srs / f"{fractured.study_instance_uid}.dcm")
    assert sr.StudyInstanceUID == fractured.study_instance_uid
    summary = result.stderr
    for label, count in (("studies", 4), ("ok", 3), ("error", 1), ("flagged", 1), ("grade 3 vertebrae", 1)):
        assert re.search(rf"{label}\W+{count}\b", summary), (label, summary)
    assert "median s / study" in summary
    assert summary.count("3 written, 0 failed") == 2  # key images and SRs of the three ok studies


def test_out_dash_writes_results_to_stdout(studies, stand_in):
    result = runner.invoke(app, ["screen", str(studies["single"]), "--out", "-"])
    assert result.exit_code == 0, result.output
    (line,) = _lines(result.stdout)
    assert line.status == "ok" and line.series_instance_uid
    assert json.loads(result.stdout.strip())["schema_version"] == "1.0"
    assert "ok" in result.stderr  # the summary goes to stderr, not into the results


def test_a_failed_key_image_is_counted_and_the_run_goes_on(studies, stand_in, tmp_path, monkeypatch):
    import engine.report.keyimage

    def broken_renderer(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(engine.report.keyimage, "render_key_image", broken_renderer)
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["screen", str(studies["single"]), "--out", str(out),
                                 "--key-images", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    assert [r.status for r in _lines(out.read_text())] == ["ok"]
    assert "0 written, 1 failed" in result.stderr


def test_a_missing_path_is_a_usage_error(tmp_path, stand_in):
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["screen", str(missing), "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2
    assert "nowhere does not exist" in result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_missing_models_name_the_file_and_how_to_get_them(studies, tmp_path, monkeypatch):
    monkeypatch.setenv("VCF_MODELS__DIR", str(tmp_path))
    result = runner.invoke(app, ["screen", str(studies["single"]), "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2
    assert "vertebra_seg.onnx" in result.stderr and "vcfscreen train" in result.stderr
    assert "VCF_MODELS__DIR" in result.stderr


def test_triton_backend_absent_is_a_usage_error(studies, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "engine.infer.triton_backend", None)  # import fails
    result = runner.invoke(app, ["screen", str(studies["single"]), "--out", str(tmp_path / "r.jsonl"),
                                 "--backend", "triton", "--triton-url", "triton:8001"])
    assert result.exit_code == 2
    assert "Triton backend" in result.stderr and "--backend onnxruntime" in result.stderr


def test_backend_options_reach_the_settings(studies, tmp_path, monkeypatch):
    seen = {}

    def capture(settings):
        seen["backend"], seen["url"] = settings.models.backend.value, settings.triton.url
        return IntensityBackend()

    monkeypatch.setattr(engine.screen, "make_backend", capture)
    result = runner.invoke(app, ["screen", str(studies["single"]), "--out", str(tmp_path / "r.jsonl"),
                                 "--backend", "triton", "--triton-url", "triton.internal:8101"])
    assert result.exit_code == 0, result.output
    assert seen == {"backend": "triton", "url": "triton.internal:8101"}


@pytest.mark.parametrize("args", [["--triton-url", "no-port"], ["--backend", "tensorflow"]])
def test_bad_option_values_are_usage_errors(studies, tmp_path, args, stand_in):
    result = runner.invoke(app, ["screen", str(studies["single"]), "--out", str(tmp_path / "r.jsonl"), *args])
    assert result.exit_code == 2


def test_discover_studies(tmp_path):
    parent = tmp_path / "parent"
    for name in ("b", "a", ".cache"):
        (parent / name).mkdir(parents=True)
        (parent / name / "x.dcm").write_bytes(b"")
    (parent / "truth.json").write_text("{}")  # ground truth beside sub-folders: not a study file
    (parent / ".DS_Store").write_bytes(b"")
    study = tmp_path / "study"
    (study / "series1").mkdir(parents=True)
    (study / "IM0001").write_bytes(b"")  # files directly inside: one study, sub-folders included
    empty = tmp_path / "empty"
    empty.mkdir()
    found = discover_studies([study, parent, empty])
    assert found == [study, parent / "a", parent / "b", empty]
    with pytest.raises(UsageError, match="missing does not exist"):
        discover_studies([tmp_path / "missing"])
