"""One study judged against its truth, and the report adding studies up (hand-made results)."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from engine.errors import CorruptStudyError, LevelsNotNamedError, NoSpineError, NotEligibleError
from engine.evaluate.confounders import attribute, attribute_unmatched, count_by_type
from engine.evaluate.report import build_report
from engine.evaluate.study import evaluate_study
from engine.evaluate.table import summary_table
from engine.evaluate.truth import (
    PARTIAL_LABEL,
    Confounder,
    TruthFileError,
    TruthLabels,
    parse_truth,
)
from engine.results import LevelNaming, ScreeningResult, VertebraFinding
from engine.settings import GradingSettings

LEVELS = ["T11", "T12", "L1", "L2", "L3"]


def truth_record(uid: str, grades: dict[str, int], confounders: list[dict] | None = None) -> dict:
    return {
        "study_instance_uid": uid,
        "vertebrae": [
            {"level": level, "centroid_lps_mm": [0.0, 10.0, -26.0 * k], "genant_grade": grades.get(level, 0)}
            for k, level in enumerate(LEVELS)
        ],
        "confounders": confounders or [],
    }


def finding(level: str, z: float, grade: int = 0, probability: float | None = None, x: float = 0.0) -> VertebraFinding:
    p = probability if probability is not None else (0.9 if grade else 0.1)
    return VertebraFinding(level=level, centroid_lps_mm=(x, 10.0, z), fracture_probability=p,
                           genant_grade=grade, height_loss=0.3 if grade else 0.05)


def result(uid: str, findings: list[VertebraFinding]) -> ScreeningResult:
    return ScreeningResult.from_findings(uid, "1.2.3.9", findings, pipeline_version="test",
                                         grading=GradingSettings())


def test_parse_truth_reads_the_contract_and_names_bad_fields():
    truth = parse_truth(truth_record("1.2.3", {"L1": 3}, [{"type": "scoliosis", "levels": ["T12", "L1"]},
                                                         {"type": "metal", "device": "hip_prosthesis", "levels": []}]))
    assert truth.levels == tuple(LEVELS) and truth.max_grade == 3
    assert [v.label for v in truth.vertebrae] == [1, 2, 3, 4, 5]
    assert truth.confounders == (Confounder("scoliosis", ("T12", "L1")), Confounder("metal", ()))
    with pytest.raises(TruthFileError, match="study_instance_uid"):
        parse_truth({"vertebrae": []})
    bad = truth_record("1.2.3", {})
    bad["vertebrae"][2]["genant_grade"] = 5
    with pytest.raises(TruthFileError, match="L1 has genant_grade 5"):
        parse_truth(bad)
    bad = truth_record("1.2.3", {})
    bad["vertebrae"][1]["level"] = "X9"
    with pytest.raises(TruthFileError, match="vertebra #1"):
        parse_truth(bad)


def test_false_positive_fracture_calls_are_attributed_to_the_confounder_at_their_level():
    truth = parse_truth(truth_record("1.2.3", {"L1": 2}, [{"type": "sclerotic_metastasis", "levels": ["T12"]}]))
    findings = [
        finding("T11", 0.0), finding("T12", -26.0, grade=3),  # T12 is normal, holds a metastasis
        finding("L1", -52.0, grade=2), finding("L2", -78.0), finding("L3", -104.0),
    ]
    evaluation = evaluate_study(truth, result("1.2.3", findings), seconds=1.5)
    assert evaluation.status == "ok" and evaluation.correct_level == 5
    assert evaluation.true_flag and evaluation.predicted_flag
    assert [(fp.level, fp.confounders, fp.matched) for fp in evaluation.false_positives] == [
        ("T12", ["sclerotic_metastasis"], True)
    ]


def test_unmatched_fracture_calls_fall_on_the_nearest_level_or_the_whole_study():
    truth = parse_truth(truth_record("1.2.3", {}, [
        {"type": "scoliosis", "levels": ["L3"]}, {"type": "metal", "device": "hip_prosthesis", "levels": []}]))
    findings = [finding(level, -26.0 * k) for k, level in enumerate(LEVELS[:4])]
    findings.append(finding("L4", -104.0, grade=2, x=25.0))  # 25 mm off L3: unmatched, near L3
    findings.append(finding("T10", 30.0, grade=3))  # above T11, no confounder there
    evaluation = evaluate_study(truth, result("1.2.3", findings))
    assert evaluation.matched == 4 and evaluation.false_detections == 2
    attributions = {fp.predicted_level: (fp.level, fp.confounders) for fp in evaluation.false_positives}
    assert attributions == {"L4": ("L3", ["scoliosis"]), "T10": ("T11", ["metal"])}
    assert not evaluation.true_flag and evaluation.predicted_flag


def test_attribution_rules():
    confounders = [Confounder("schmorl_node", ("L2",)), Confounder("degenerative", ("L2", "L3")),
                   Confounder("partial_coverage", ())]
    assert attribute("L2", confounders) == ["schmorl_node", "degenerative"]
    assert attribute("T5", confounders) == ["partial_coverage"]
    assert attribute("T5", confounders[:2]) == ["none"]
    assert attribute("T5", confounders[:2], on_partial_body=True) == ["partial_coverage"]
    assert count_by_type([["a", "b"], ["a"], ["none"]]) == {"a": 2, "b": 1, "none": 1}
    # a prediction without a true vertebra: its nearest level, then its own name
    assert attribute_unmatched("L3", "L4", [Confounder("metal", ("L4",))], False) == ["metal"]
    assert attribute_unmatched("L3", "L4", [], True) == ["partial_coverage"]


def test_report_adds_up_misses_shifts_and_unanalysable_studies():
    ok_truth = parse_truth(truth_record("1.1", {"L1": 3, "L2": 2}))
    # L1 found and graded 3; L2 missed entirely (no prediction near it); L3 named L4
    ok = evaluate_study(ok_truth, result("1.1", [
        finding("T11", 0.0), finding("T12", -26.0), finding("L1", -52.0, grade=3), finding("L4", -104.0),
    ]), seconds=2.0)
    clean = evaluate_study(parse_truth(truth_record("1.2", {})), result("1.2", [
        finding(level, -26.0 * k, probability=0.2) for k, level in enumerate(LEVELS)]), seconds=4.0)
    failed_truth = parse_truth(truth_record("1.3", {"T12": 2}))
    failed = evaluate_study(failed_truth, ScreeningResult.from_exception("1.3", CorruptStudyError("slice 4 truncated")),
                            seconds=0.5)
    refused = evaluate_study(parse_truth(truth_record("1.4", {})),
                             ScreeningResult.not_eligible("1.4", NotEligibleError("no axial CT series")))
    report = build_report([ok, clean, failed, refused], source="hand-made")

    assert report.studies.valid == 4 and report.studies.analysed == 2
    assert (report.studies.error, report.studies.not_eligible) == (1, 1)
    assert report.studies.unanalysable_share == 0.5
    assert report.studies.fractures_in_unanalysable == 1

    ident = report.identification
    assert (ident.true_vertebrae, ident.detected, ident.correct_level) == (10, 9, 8)
    assert ident.one_level_shifts == 1 and ident.false_detections == 0
    assert ident.level_identification == pytest.approx(0.8)

    by_threshold = {t.threshold: t for t in report.fracture.thresholds}
    assert report.fracture.missed_fractures == 1
    assert (by_threshold[2].tp, by_threshold[2].fn, by_threshold[2].fp) == (1, 1, 0)
    assert by_threshold[2].sensitivity == 0.5 and by_threshold[2].ppv == 1.0
    assert by_threshold[3].sensitivity == 1.0
    assert report.fracture.auc_pairs == 9 and report.fracture.auc_grade2 == 1.0

    assert (report.flag.tp, report.flag.tn) == (1, 1)
    assert report.runtime.studies == 3 and report.runtime.total_s == pytest.approx(6.5)
    assert report.dice.studies == 0 and "Dice needs" in report.dice.note
    assert report.false_positives.total == 0 and report.false_positives.on_grade1 == 0

    targets = {t.figure: t for t in report.targets}
    assert targets["ppv_grade2"].met and not targets["sensitivity_grade2"].met
    assert targets["level_identification"].value == pytest.approx(0.8) and not targets["level_identification"].met
    assert not report.all_targets_met


def test_a_spine_the_models_could_not_read_counts_as_missed_not_as_unanalysable():
    # The models' failure on a screening CT must not leave the denominators: its vertebrae and its
    # fracture are misses. A series that is no screening CT stays unanalysable.
    read = evaluate_study(parse_truth(truth_record("2.1", {"L1": 2})), result("2.1", [
        finding(level, -26.0 * k, grade=2 if level == "L1" else 0) for k, level in enumerate(LEVELS)]))
    unread = evaluate_study(parse_truth(truth_record("2.2", {"T12": 3})), ScreeningResult.not_eligible(
        "2.2", LevelsNotNamedError("5 vertebral bodies were found but no level could be named")))
    empty = evaluate_study(parse_truth(truth_record("2.3", {})), ScreeningResult.not_eligible(
        "2.3", NoSpineError("the segmentation found no vertebral column and no sacrum in the series")))
    refused = evaluate_study(parse_truth(truth_record("2.4", {"L2": 2})),
                             ScreeningResult.not_eligible("2.4", NotEligibleError("no axial CT series")))
    assert unread.analysed and unread.spine_not_read and empty.analysed and not refused.analysed
    report = build_report([read, unread, empty, refused], source="hand-made")
    assert (report.studies.analysed, report.studies.spine_not_read, report.studies.not_eligible) == (3, 2, 1)
    assert report.studies.fractures_in_unanalysable == 1
    assert (report.identification.true_vertebrae, report.identification.detected) == (15, 5)
    by_threshold = {t.threshold: t for t in report.fracture.thresholds}
    assert (by_threshold[2].tp, by_threshold[2].fn) == (1, 1)
    assert by_threshold[3].sensitivity == 0.0
    assert (report.flag.tp, report.flag.fn) == (1, 1)
    table = Console(width=200, record=True)
    table.print(summary_table(report))
    assert "spine not read by the models" in table.export_text()


def test_a_prediction_on_a_body_cut_by_the_field_of_view_is_no_false_detection():
    record = truth_record("1.5", {}, [{"type": "partial_coverage", "side": "superior", "levels": ["T10"]}])
    record["excluded_vertebrae"] = [{"level": "T10", "label_value": 255}]
    truth = parse_truth(record)
    findings = [finding(level, -26.0 * k) for k, level in enumerate(LEVELS)]
    findings.append(finding("T10", 26.0, grade=2))  # the cut body, deformed by the cut
    evaluation = evaluate_study(truth, result("1.5", findings))
    assert evaluation.false_detections == 0
    assert [p.on_partial_body for p in evaluation.pairs if p.true_level is None] == [True]
    assert [fp.confounders for fp in evaluation.false_positives] == [["partial_coverage"]]
    report = build_report([evaluation], source="hand-made")
    assert report.identification.ignored_partial_bodies == 1
    assert report.false_positives.by_confounder == {"partial_coverage": 1}


def test_the_label_under_an_unmatched_prediction_decides_partial_bodies():
    # labels on a 2 mm grid, axis0 = z; each true body a small box around its centroid,
    # a partial body (255) above T11
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, :3] = [[0.0, 0.0, 2.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0]]
    affine[:3, 3] = (-20.0, -10.0, -130.0)
    labels = np.zeros((90, 20, 20), np.uint8)
    truth = parse_truth(truth_record("1.6", {}))
    for vertebra in truth.vertebrae:
        k, j, i = np.rint(np.linalg.inv(affine) @ [*vertebra.centroid_lps_mm, 1.0])[:3].astype(int)
        labels[k - 2 : k + 3, j - 2 : j + 3, i - 2 : i + 3] = vertebra.label
    labels[84:89, 8:13, 8:13] = PARTIAL_LABEL  # z = 38..46 mm
    findings = [finding(level, -26.0 * k) for k, level in enumerate(LEVELS)]
    findings.append(finding("T10", 42.0))  # on the partial body, named like a true level
    findings.append(finding("T9", 75.0))  # outside the label grid: a real false detection
    evaluation = evaluate_study(truth, result("1.6", findings), labels=TruthLabels(labels, affine))
    flags = {p.predicted_level: p.on_partial_body for p in evaluation.pairs if p.true_level is None}
    assert flags == {"T10": True, "T9": False}
    assert evaluation.false_detections == 1


def test_over_grading_a_mild_fracture_is_a_false_positive_for_ppv_but_not_a_confounder_one():
    truth = parse_truth(truth_record("1.7", {"L2": 1}, [{"type": "scoliosis", "levels": ["L2"]}]))
    findings = [finding(level, -26.0 * k, grade=2 if level == "L2" else 0) for k, level in enumerate(LEVELS)]
    report = build_report([evaluate_study(truth, result("1.7", findings))], source="hand-made")
    grade2 = next(t for t in report.fracture.thresholds if t.threshold == 2)
    assert (grade2.tp, grade2.fp) == (0, 1)
    assert report.false_positives.on_grade1 == 1
    assert report.false_positives.total == 0 and report.false_positives.by_confounder == {}


def test_misnamed_vertebrae_are_counted_where_the_result_said_its_names_were_in_doubt():
    truth_a, truth_b = (parse_truth(truth_record(uid, {})) for uid in ("1.2.3", "1.2.4"))
    shifted = [finding(name, -26.0 * k) for k, name in enumerate(["T12", "L1", "L2", "L3", "L4"])]  # all one off
    doubt = LevelNaming(anchor="ribs+sacrum", notes=("the number of rib-bearing vertebrae is not seen",), doubt="rib count")
    said = ScreeningResult.from_findings("1.2.3", "1.2.3.9", shifted, pipeline_version="test",
                                         grading=GradingSettings(), level_naming=doubt)
    silent = result("1.2.4", [finding("T10", 0.0)] + [finding(name, -26.0 * k) for k, name in enumerate(LEVELS) if k])
    a, b = evaluate_study(truth_a, said), evaluate_study(truth_b, silent)
    assert a.names_in_doubt and not b.names_in_doubt
    ident = build_report([a, b], source="hand-made").identification
    assert (ident.studies_in_doubt, ident.misnamed, ident.misnamed_in_doubt) == (1, 6, 5)


def test_level_identification_is_split_by_the_true_spines_anatomy():
    typical = parse_truth(truth_record("2.1", {}))
    eleven = parse_truth(truth_record("2.2", {}, [{"type": "transitional", "variant": "11_thoracic", "levels": ["T11"]}]))
    unnamed = parse_truth(truth_record("2.3", {}, [{"type": "transitional", "levels": []}]))
    assert (typical.anatomy, eleven.anatomy, unnamed.anatomy) == ("typical", "11_thoracic", "transitional")
    right = [finding(level, -26.0 * k) for k, level in enumerate(LEVELS)]
    shifted = [finding(name, -26.0 * k) for k, name in enumerate(["T12", "L1", "L2", "L3", "L4"])]  # all one off
    report = build_report([evaluate_study(typical, result("2.1", right)), evaluate_study(eleven, result("2.2", shifted)),
                           evaluate_study(unnamed, result("2.3", right))], source="hand-made")
    by_anatomy = [(a.anatomy, a.studies, a.correct_level, a.true_vertebrae) for a in report.identification.by_anatomy]
    assert by_anatomy == [("typical", 1, 5, 5), ("11_thoracic", 1, 0, 5), ("transitional", 1, 5, 5)]
    assert report.identification.by_anatomy[1].level_identification == 0.0
    console = Console(width=160, record=True)
    console.print(summary_table(report))
    assert "level identification, 11_thoracic spines" in console.export_text()


def test_report_gives_the_height_loss_error_by_true_morphology():
    record = truth_record("1.5", {"L1": 2, "L2": 1})
    for vertebra in record["vertebrae"]:
        vertebra.update(height_loss=0.05, morphology="none")
    record["vertebrae"][2].update(height_loss=0.30, morphology="biconcave")  # L1
    record["vertebrae"][3].update(height_loss=0.22, morphology="wedge")  # L2
    del record["vertebrae"][0]["morphology"]  # T11, normal: a truth may leave out "none"
    measured = {"T11": 0.07, "T12": 0.02, "L1": 0.24, "L2": 0.25}  # L3 not measured (no morphometric grade)
    findings = [
        VertebraFinding(level=level, centroid_lps_mm=(0.0, 10.0, -26.0 * k), fracture_probability=0.1, genant_grade=0,
                        height_loss=measured.get(level, 0.6), morphometric_grade=0 if level in measured else None)
        for k, level in enumerate(LEVELS)
    ]
    report = build_report([evaluate_study(parse_truth(record), result("1.5", findings))], source="hand-made")
    errors = {e.morphology: e for e in report.height_loss}
    assert [e.morphology for e in report.height_loss] == ["none", "biconcave", "wedge"]  # normal bodies first
    assert errors["none"].bodies == 2  # L3's unmeasured 0.6 does not count
    assert errors["none"].median_error == pytest.approx(-0.005)
    assert errors["none"].mean_absolute_error == pytest.approx(0.025)
    assert errors["biconcave"].median_error == pytest.approx(-0.06)
    assert errors["wedge"].median_error == pytest.approx(0.03)

    console = Console(width=160, record=True)
    console.print(summary_table(report))
    text = console.export_text()
    assert "height loss error, biconcave (median)" in text and "height loss error, normal bodies" in text

    del record["vertebrae"][3]["morphology"]  # a fractured L2 without a morphology is not a normal body
    report = build_report([evaluate_study(parse_truth(record), result("1.5", findings))], source="hand-made")
    assert [(e.morphology, e.bodies) for e in report.height_loss] == [("none", 2), ("biconcave", 1), ("unspecified", 1)]
