"""A synthetic lower spine on the 2 mm model grid, from masks to a ScreeningResult line."""

from __future__ import annotations

import numpy as np
import pytest
from postprocess_bodies import Body, draw_spine

from engine.postprocess import ClassifierOutput, VertebraInput, findings_from_vertebrae
from engine.results import ScreeningResult
from engine.settings import GradingSettings

LEVELS = ["T11", "T12", "L1", "L2", "L3"]
POSTERIOR = [21.0, 22.0, 23.0, 23.5, 24.0]
SETTINGS = GradingSettings()
HEALTHY = ClassifierOutput(0.04, (0.94, 0.03, 0.02, 0.01))
FRACTURED = ClassifierOutput(0.91, (0.02, 0.06, 0.86, 0.06))


def spine(collapse: dict[str, float], soft: bool = True):
    bodies = []
    for level, posterior in zip(LEVELS, POSTERIOR):
        factor = collapse.get(level, 1.0)
        bodies.append(Body(posterior=posterior * factor, anterior=posterior * 0.95 * factor,
                           depth=30.0, width=40.0))
    return draw_spine(bodies, (2.0, 2.0, 2.0), np.random.default_rng(6), soft=soft)


def inputs(masks, affine, classifier=None):
    classifier = classifier or {}
    return [
        VertebraInput(level, mask, affine, classifier.get(level, HEALTHY))
        for level, mask in zip(LEVELS, masks)
    ]


@pytest.fixture(scope="module")
def crushed_l1():
    masks, affine, centres = spine({"L1": 0.65})
    findings = findings_from_vertebrae(inputs(masks, affine, {"L1": FRACTURED}), SETTINGS)
    return findings, centres


def test_crushed_vertebra_is_graded_and_located(crushed_l1):
    findings, centres = crushed_l1
    assert [f.level for f in findings] == LEVELS
    by_level = {f.level: f for f in findings}
    l1 = by_level["L1"]
    # 1 - 0.95 * 0.65 (the smallest, anterior, height against the intact posterior) = 38%.
    assert l1.height_loss == pytest.approx(0.38, abs=0.03)
    assert (l1.genant_grade, l1.morphometric_grade, l1.morphology) == (2, 2, "crush")
    assert (l1.decided_by, l1.classifier_grade) == ("agreement", 2)
    assert l1.heights_mm.expected == pytest.approx(23.0, abs=0.75)
    assert [by_level[lv].genant_grade for lv in ("T11", "T12", "L2", "L3")] == [0, 0, 0, 0]
    for finding, centre in zip(findings, centres):
        assert np.linalg.norm(np.array(finding.centroid_lps_mm) - centre) < 1.0
        assert finding.heights_mm is not None


def test_result_line_of_the_study(crushed_l1):
    findings, _ = crushed_l1
    result = ScreeningResult.from_findings(
        "1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11", findings,
        pipeline_version="vcfscreen test", grading=SETTINGS, timings_ms={"postprocess": 42.0},
    )
    assert (result.flag, result.max_genant_grade) == (True, 2)
    assert ScreeningResult.from_json(result.to_json_line()) == result


def test_deformity_the_classifier_does_not_see_is_vetoed():
    masks, affine, _ = spine({"T12": 0.65})
    findings = {f.level: f for f in findings_from_vertebrae(inputs(masks, affine), SETTINGS)}
    t12 = findings["T12"]
    assert (t12.morphometric_grade, t12.genant_grade, t12.decided_by) == (2, 0, "classifier_veto")
    assert t12.morphology == "crush"  # the morphometric shape is kept for the reader


def test_severe_collapse_the_classifier_does_not_see_is_vetoed_with_a_note():
    masks, affine, _ = spine({"T12": 0.4})
    t12 = {f.level: f for f in findings_from_vertebrae(inputs(masks, affine), SETTINGS)}["T12"]
    assert t12.height_loss == pytest.approx(0.62, abs=0.04)
    assert (t12.morphometric_grade, t12.genant_grade, t12.decided_by) == (3, 0, "classifier_veto")
    assert t12.fracture_probability == HEALTHY.fracture_probability
    assert any("not confirmed by the classifier" in note for note in t12.notes)


def test_classifier_grade_above_the_measured_loss_is_kept_and_explained():
    """A mask that under-reads a collapse (here 19% measured) does not hold the grade down."""
    severe = ClassifierOutput(0.99, (0.0, 0.05, 0.25, 0.70))
    masks, affine, _ = spine({"L1": 0.85})
    l1 = {f.level: f for f in findings_from_vertebrae(inputs(masks, affine, {"L1": severe}), SETTINGS)}["L1"]
    assert (l1.morphometric_grade, l1.classifier_grade) == (0, 3)
    assert (l1.genant_grade, l1.decided_by) == (3, "classifier")
    assert any("graded 3 by the classifier, above the morphometric grade 0" in note for note in l1.notes)


def test_body_cut_by_the_volume_edge_is_not_measured():
    masks, affine, _ = spine({})
    # axis0 runs Superior: dropping the top slices cuts the first body (T11) in half.
    top = int(np.argwhere(masks[0] >= 0.5)[:, 0].mean())
    cut = [m[:top] for m in masks]
    findings = {f.level: f for f in findings_from_vertebrae(inputs(cut, affine), SETTINGS)}
    t11 = findings["T11"]
    assert t11.morphometric_grade is None and t11.heights_mm is None
    assert any("edge of the volume" in note for note in t11.notes)
    assert (t11.genant_grade, t11.decided_by) == (0, "no_fracture")
    assert findings["T12"].genant_grade == 0
    assert any("one side only" in note for note in findings["T12"].notes)


def test_a_body_the_scan_cuts_is_reported_but_not_graded_whatever_the_classifier_says():
    masks, affine, centres = spine({})
    given = inputs(masks, affine, {"T11": FRACTURED})
    given[0] = VertebraInput("T11", masks[0], affine, FRACTURED, cut_by_scan=True)
    findings = {f.level: f for f in findings_from_vertebrae(given, SETTINGS)}
    t11 = findings["T11"]
    assert (t11.genant_grade, t11.decided_by, t11.classifier_grade) == (0, "not_graded", 2)
    assert any("first or last slice cuts" in note for note in t11.notes)
    assert np.linalg.norm(np.array(t11.centroid_lps_mm) - centres[0]) < 1.0
    # nor is it a neighbour for T12's reference height
    assert any("one side only" in note for note in findings["T12"].notes)
    assert ScreeningResult.from_findings("1.2.3", "1.2.3.4", list(findings.values()), pipeline_version="t",
                                         grading=SETTINGS).max_genant_grade == 0


def test_a_body_holding_metal_is_not_measured_and_graded_by_the_classifier_alone():
    # The phantoms' failure: screws bend a normal body's outline into a grade-3 "collapse"
    # and the classifier, unsure around metal, confirms a mild fracture.
    masks, affine, _ = spine({"L1": 0.5})
    mild = ClassifierOutput(0.8, (0.1, 0.8, 0.05, 0.05))

    def l1(metal_mm3: float):
        given = inputs(masks, affine, {"L1": mild})
        given[2] = VertebraInput("L1", masks[2], affine, mild, metal_mm3=metal_mm3)
        return {f.level: f for f in findings_from_vertebrae(given, SETTINGS)}["L1"]

    measured = l1(metal_mm3=0.6)  # one stray bright voxel is not an implant
    assert (measured.genant_grade, measured.morphometric_grade, measured.decided_by) == (3, 3, "morphometry")
    screwed = l1(metal_mm3=1200.0)
    assert (screwed.genant_grade, screwed.decided_by, screwed.classifier_grade) == (1, "classifier", 1)
    assert screwed.morphometric_grade is None and screwed.heights_mm is None
    assert any("1200 mm^3 of metal or cement" in note for note in screwed.notes), screwed.notes


def test_repeated_or_empty_levels_are_refused():
    masks, affine, _ = spine({})
    twice = inputs(masks, affine)[:2] + [VertebraInput("T11", masks[2], affine, HEALTHY)]
    with pytest.raises(ValueError, match="repeated: T11"):
        findings_from_vertebrae(twice, SETTINGS)
    empty = [VertebraInput("L1", np.zeros_like(masks[0]), affine, HEALTHY)]
    with pytest.raises(ValueError, match="L1: the mask is empty"):
        findings_from_vertebrae(empty, SETTINGS)
    assert findings_from_vertebrae([], SETTINGS) == []


def test_sacrum_is_reported_but_never_graded():
    masks, affine, centres = spine({})
    given = inputs(masks, affine)[:4] + [VertebraInput("S1", masks[4], affine, FRACTURED)]
    findings = {f.level: f for f in findings_from_vertebrae(given, SETTINGS)}
    s1 = findings["S1"]
    assert (s1.genant_grade, s1.decided_by, s1.classifier_grade) == (0, "not_graded", 2)
    assert s1.fracture_probability == FRACTURED.fracture_probability
    assert np.linalg.norm(np.array(s1.centroid_lps_mm) - centres[4]) < 1.0
    # L2 is now the last graded body: its reference comes from above only.
    assert any("one side only" in note for note in findings["L2"].notes)
