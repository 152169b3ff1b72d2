"""The results file and the run summary."""

from __future__ import annotations

import pytest

from engine.errors import CorruptStudyError, NotEligibleError
from engine.report.jsonl import ResultWriter
from engine.report.summary import RunSummary
from engine.results import HeightsMm, ScreeningResult, VertebraFinding
from engine.settings import GradingSettings


def _ok(uid: str, grades: dict[str, int]) -> ScreeningResult:
    findings = [
        VertebraFinding(level=level, centroid_lps_mm=(0.0, 0.0, -20.0 * i), fracture_probability=0.5,
                        genant_grade=grade, height_loss=0.1 * grade,
                        heights_mm=HeightsMm(anterior=20, middle=20, posterior=20))
        for i, (level, grade) in enumerate(grades.items())
    ]
    return ScreeningResult.from_findings(uid, uid + ".1", findings, pipeline_version="vcfscreen test",
                                         grading=GradingSettings())


def test_each_line_is_on_disk_as_soon_as_it_is_written(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    with ResultWriter(path) as writer:
        writer.write(_ok("1.2.3", {"L1": 3}))
        first = path.read_text().splitlines()  # read while the file is still open
        assert len(first) == 1 and ScreeningResult.from_json(first[0]).study_instance_uid == "1.2.3"
        writer.write(ScreeningResult.error("1.2.4", CorruptStudyError("slice 3 has no pixel data")))
    lines = path.read_text().splitlines()
    assert [ScreeningResult.from_json(line).status for line in lines] == ["ok", "error"]
    assert writer.lines == 2


def test_dash_writes_to_standard_output(capsys):
    with ResultWriter("-") as writer:
        writer.write(_ok("1.2.3", {"T12": 0}))
    out = capsys.readouterr().out
    assert ScreeningResult.from_json(out.strip()).study_instance_uid == "1.2.3"


def test_write_before_open_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="before open"):
        ResultWriter(tmp_path / "x.jsonl").write(_ok("1", {"L1": 0}))


def test_summary_counts_outcomes_findings_and_time():
    summary = RunSummary()
    summary.add(_ok("1", {"T12": 3, "L1": 3, "L2": 0}), 2.0)
    summary.add(_ok("2", {"L1": 1}), 4.0)
    summary.add(ScreeningResult.not_eligible("3", NotEligibleError("no axial CT series")), 0.5)
    summary.add(ScreeningResult.error("4", CorruptStudyError("broken")), 0.1)
    summary.key_image_failures += 1
    assert (summary.total, summary.ok, summary.not_eligible, summary.error) == (4, 2, 1, 1)
    assert summary.flagged == 1 and summary.studies_with_grade3 == 1 and summary.grade3_vertebrae == 2
    assert summary.median_seconds == pytest.approx(1.25)
    rows = dict(summary.rows())
    assert rows["median s / study"] == "1.25"
    assert rows["reasons"] == "corrupt 1, not_eligible 1"
    assert rows["key images"] == "0 written, 1 failed"
    assert "DICOM SR" not in rows
    assert RunSummary().median_seconds is None
