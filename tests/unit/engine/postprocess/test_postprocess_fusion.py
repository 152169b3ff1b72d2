from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from engine.postprocess.fusion import DECISIONS, ClassifierOutput, fuse
from engine.settings import GradingSettings

SETTINGS = GradingSettings()


@dataclass(frozen=True)
class Morph:
    height_loss: float
    grade: int


def morph(loss: float) -> Morph:
    from engine.postprocess.grading import genant_grade

    return Morph(loss, genant_grade(loss, SETTINGS))


def classifier(probability: float, grade: int = 0, confidence: float = 0.9) -> ClassifierOutput:
    rest = (1.0 - confidence) / 3
    return ClassifierOutput(probability, tuple(confidence if g == grade else rest for g in range(4)))


def test_agreement_keeps_the_morphometric_grade():
    fused = fuse(morph(0.30), classifier(0.8, grade=3), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (2, "agreement")
    assert (fused.morphometric_grade, fused.classifier_grade) == (2, 3)
    assert fused.fracture_probability == 0.8 and fused.height_loss == 0.30


def test_classifier_vetoes_a_deformity_it_does_not_see():
    """A sclerotic metastasis or scoliosis can fake a 30% loss in the mask."""
    fused = fuse(morph(0.30), classifier(0.1, grade=0), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (0, "classifier_veto")
    assert fused.morphometric_grade == 2 and fused.fracture_probability == 0.1


def test_severe_collapse_stands_against_the_classifier():
    fused = fuse(morph(0.55), classifier(0.2, grade=0), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (3, "severe_collapse")
    assert fused.fracture_probability == SETTINGS.fracture_probability_threshold
    assert fused.classifier_probability == 0.2
    # Grade 3 but not far beyond its threshold: the classifier's veto still applies.
    assert fuse(morph(0.45), classifier(0.2), SETTINGS).decided_by == "classifier_veto"


def test_confident_classifier_grades_what_the_morphometry_missed():
    fused = fuse(morph(0.05), classifier(0.9, grade=2, confidence=0.85), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (2, "classifier")
    unmeasured = fuse(None, classifier(0.9, grade=3, confidence=0.9), SETTINGS)
    assert (unmeasured.genant_grade, unmeasured.decided_by, unmeasured.morphometric_grade) == (3, "classifier", None)


def test_unconfident_or_inconsistent_classifier_alone_gives_grade_0():
    hesitant = fuse(morph(0.05), classifier(0.7, grade=2, confidence=0.6), SETTINGS)
    assert (hesitant.genant_grade, hesitant.decided_by) == (0, "unconfirmed")
    # A confident grade 2 with a fracture probability under the threshold: the heads disagree.
    inconsistent = fuse(morph(0.05), classifier(0.3, grade=2, confidence=0.95), SETTINGS)
    assert (inconsistent.genant_grade, inconsistent.decided_by) == (0, "no_fracture")


def test_nothing_seen_is_no_fracture():
    fused = fuse(morph(0.1), classifier(0.05), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (0, "no_fracture")


def test_rule_parameters_come_from_the_settings():
    lenient = GradingSettings(classifier_confidence=0.5, severe_override_margin=0.0,
                              fracture_probability_threshold=0.3)
    assert fuse(morph(0.05), classifier(0.9, grade=1, confidence=0.6), lenient).decided_by == "classifier"
    assert fuse(morph(0.41), classifier(0.1), lenient).decided_by == "severe_collapse"
    assert fuse(morph(0.22), classifier(0.35), lenient).decided_by == "agreement"


def test_a_positive_grade_always_has_a_probability_at_or_above_the_threshold():
    seen = set()
    for loss, probability, grade, confidence in itertools.product(
        (0.0, 0.1, 0.22, 0.3, 0.45, 0.6), (0.0, 0.3, 0.5, 0.7, 1.0), range(4), (0.4, 0.85)
    ):
        fused = fuse(morph(loss), classifier(probability, grade, confidence), SETTINGS)
        seen.add(fused.decided_by)
        assert fused.decided_by in DECISIONS
        assert 0 <= fused.genant_grade <= 3
        if fused.genant_grade >= 1:
            assert fused.fracture_probability >= SETTINGS.fracture_probability_threshold
    assert seen == set(DECISIONS)


def test_classifier_output_is_validated():
    with pytest.raises(ValueError, match="sum to 1"):
        ClassifierOutput(0.5, (0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ClassifierOutput(1.5, (1.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="4 grade probabilities"):
        ClassifierOutput.from_outputs(0.5, [0.5, 0.5])
    out = ClassifierOutput.from_outputs(0.7, [0.1, 0.2, 0.6, 0.1])
    assert (out.grade, out.confidence) == (2, 0.6)
    assert ClassifierOutput(0.5, (0.4, 0.4, 0.1, 0.1)).grade == 0  # ties go to the lower grade
