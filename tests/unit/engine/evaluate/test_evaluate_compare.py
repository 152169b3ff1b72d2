"""The paired comparison of two reports: figures on the shared studies, and every study that moved."""

from __future__ import annotations

from rich.console import Console

from engine.evaluate.compare import CallChange, compare
from engine.evaluate.report import build_report
from engine.evaluate.study import StudyEvaluation, VertebraPair
from engine.evaluate.table import comparison_renderable

LEVELS = ["T10", "T11", "T12", "L1"]


def study(uid: str, named: list[str], grades: list[int], true_grades: list[int]) -> StudyEvaluation:
    """One analysed study of four true vertebrae, each matched to a prediction."""
    pairs = [VertebraPair(true_level=t, predicted_level=p, true_grade=tg, predicted_grade=g, fracture_probability=g / 3)
             for t, p, g, tg in zip(LEVELS, named, grades, true_grades)]
    correct = sum(t == p for t, p in zip(LEVELS, named))
    return StudyEvaluation(
        study_instance_uid=uid, status="ok", seconds=1.0, true_max_grade=max(true_grades),
        true_flag=max(true_grades) >= 2, true_fractures=sum(g >= 2 for g in true_grades),
        predicted_flag=max(grades) >= 2, true_vertebrae=4, matched=4, correct_level=correct,
        one_level_shifts=4 - correct, pairs=pairs,
    )


SHIFTED = ["T11", "T12", "L1", "L2"]


def test_one_study_fixed_and_one_broken_are_two_changes_though_the_totals_stand_still():
    truth_a, truth_b = [0, 2, 0, 0], [0, 0, 1, 0]
    before = build_report([study("1.1", LEVELS, [0, 2, 0, 0], truth_a), study("1.2", SHIFTED, [0, 0, 1, 0], truth_b),
                           study("1.3", LEVELS, [0, 0, 0, 0], [0] * 4)], "before")
    after = build_report([study("1.1", SHIFTED, [0, 2, 0, 0], truth_a), study("1.2", LEVELS, [0, 0, 2, 0], truth_b),
                          study("1.4", LEVELS, [0, 0, 0, 0], [0] * 4)], "after")
    result = compare(before, after)

    assert (result.shared, result.only_before, result.only_after) == (2, 1, 1)
    figures = {f.label: f for f in result.figures}
    names = figures["correct level names"]
    assert (names.before, names.after, names.verdict) == (4, 4, "same")  # on the shared studies only
    assert figures["grade >= 2 false positives"].after == 1
    assert figures["grade >= 2 false positives"].verdict == "worse"
    assert figures["study flag false positives"].verdict == "worse"

    by_uid = {s.uid: s for s in result.studies}
    assert set(by_uid) == {"1.1", "1.2"}
    assert (by_uid["1.1"].correct_before, by_uid["1.1"].correct_after) == (4, 0)
    assert by_uid["1.2"].calls == (CallChange("T12", 1, 1, 2),)
    assert by_uid["1.2"].calls[0].verdict == "worse"
    assert result.count("levels", "better") == 1 and result.count("levels", "worse") == 1
    assert result.count("calls", "worse") == 1 and result.count("flag", "worse") == 1

    console = Console(width=160, record=True)
    console.print(comparison_renderable(result, lambda uid: f"study {uid}"))
    text = console.export_text()
    assert "levels: 1 study better, 1 worse" in text
    assert "study 1.1" in text and "4 -> 0 of 4" in text and "T12 (1): 1 -> 2" in text
    assert "not compared: 1 study only in the earlier report, 1 only in this one" in text


def test_a_grade_that_moves_without_crossing_the_fracture_line_is_neither_better_nor_worse():
    assert CallChange("L1", 3, 2, 3).verdict == "grade"
    assert CallChange("L1", 2, 1, 2).verdict == "better"
    assert CallChange("L1", 2, None, 3).verdict == "better"  # found now, missed before
    assert CallChange("L1", 0, 2, None).verdict == "better"


def test_identical_reports_change_nothing():
    report = build_report([study("1.1", LEVELS, [0, 2, 0, 0], [0, 2, 0, 0])], "same")
    result = compare(report, report)
    assert result.studies == () and all(f.verdict == "same" for f in result.figures)
    console = Console(width=120, record=True)
    console.print(comparison_renderable(result, str))
    assert "no study changed" in console.export_text()


def test_a_call_on_no_true_vertebra_is_a_change_too():
    truth = [0, 0, 0, 0]
    clean = study("1.1", LEVELS, [0, 0, 0, 0], truth)
    extra = VertebraPair(true_level=None, predicted_level="L2", true_grade=None, predicted_grade=2,
                         fracture_probability=0.9)
    noisy = clean.model_copy(update={"pairs": [*clean.pairs, extra], "predicted_flag": True})
    result = compare(build_report([clean], "before"), build_report([noisy], "after"))
    (changed,) = result.studies
    assert (changed.unmatched_before, changed.unmatched_after) == (0, 1) and changed.calls == ()
    assert result.count("calls", "worse") == 1 and result.count("calls", "better") == 0
    console = Console(width=160, record=True)
    console.print(comparison_renderable(result, str))
    assert "calls on no true vertebra: 0 -> 1" in console.export_text()


def test_a_study_that_failed_on_one_side_shows_its_status_not_its_calls():
    screened = study("1.1", LEVELS, [0, 3, 0, 0], [0, 3, 0, 0])
    failed = StudyEvaluation(study_instance_uid="1.1", status="error", reason="slice 4 truncated",
                             true_max_grade=3, true_flag=True, true_fractures=1)
    for before, after in ((failed, screened), (screened, failed)):
        result = compare(build_report([before], "before"), build_report([after], "after"))
        (changed,) = result.studies
        assert changed.calls == () and (changed.status_before, changed.status_after) == (before.status, after.status)
        assert result.count("calls", "better") == result.count("calls", "worse") == 0
