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


def test_agreement_when_both_grades_are_equal():
    fused = fuse(morph(0.30), classifier(0.8, grade=2), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (2, "agreement")
    assert (fused.morphometric_grade, fused.classifier_grade) == (2, 2)
    assert fused.fracture_probability == 0.8 and fused.height_loss == 0.30
    assert fused.notes == ()


def test_confirmed_fracture_takes_the_higher_grade_morphometry_above():
    fused = fuse(morph(0.45), classifier(0.95, grade=2, confidence=0.7), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (3, "morphometry")
    assert (fused.morphometric_grade, fused.classifier_grade) == (3, 2)


def test_confirmed_fracture_takes_the_higher_grade_classifier_above():
    """The segmentation fills in a collapsed endplate: 23% measured on a true 48% wedge."""
    fused = fuse(morph(0.23), classifier(0.999, grade=3, confidence=0.6), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (3, "classifier")
    assert (fused.morphometric_grade, fused.height_loss) == (1, 0.23)
    assert len(fused.notes) == 1 and "above the morphometric grade 1 (23% height loss)" in fused.notes[0]
    # Even a hesitant grade head counts once the fracture is confirmed (no confidence needed).
    hesitant = fuse(morph(0.05), classifier(0.99, grade=2, confidence=0.45), SETTINGS)
    assert (hesitant.genant_grade, hesitant.decided_by) == (2, "classifier")


def test_unmeasured_body_takes_the_classifier_grade():
    unmeasured = fuse(None, classifier(0.9, grade=3, confidence=0.5), SETTINGS)
    assert (unmeasured.genant_grade, unmeasured.decided_by, unmeasured.morphometric_grade) == (3, "classifier", None)
    assert unmeasured.notes == ()  # nothing measured to contradict


def test_classifier_vetoes_a_deformity_it_does_not_see():
    """A sclerotic metastasis, scoliosis or an endplate change can fake a 30% loss in the mask."""
    fused = fuse(morph(0.30), classifier(0.1, grade=0), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (0, "classifier_veto")
    assert fused.morphometric_grade == 2 and fused.fracture_probability == 0.1
    assert fused.notes == ()


def test_severe_measured_collapse_is_vetoed_but_noted():
    """On 40 held-out phantoms every loss >= 50% the classifier did not confirm was a mask
    artefact (top of the field, metal, degenerative discs, sclerotic metastasis)."""
    fused = fuse(morph(0.62), classifier(0.003, grade=0), SETTINGS)
    assert (fused.genant_grade, fused.decided_by, fused.morphometric_grade) == (0, "classifier_veto", 3)
    assert fused.fracture_probability == 0.003 and fused.classifier_probability == 0.003
    assert len(fused.notes) == 1 and fused.notes[0].startswith("62% height loss measured but not confirmed")
    # A grade-3 loss short of grade3_height_loss + severe_override_margin is vetoed silently.
    assert fuse(morph(0.45), classifier(0.2), SETTINGS).notes == ()


def test_severe_collapse_stands_when_the_grade_head_sees_a_fracture():
    """The classifier's two heads disagree (probability 0.3, most likely grade 2): a gross
    measured collapse breaks the tie."""
    fused = fuse(morph(0.55), classifier(0.3, grade=2, confidence=0.5), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (3, "severe_collapse")
    assert fused.fracture_probability == SETTINGS.fracture_probability_threshold
    assert fused.classifier_probability == 0.3
    assert "grade head sees grade 2" in fused.notes[0]
    # Short of grade3_height_loss + severe_override_margin, the fracture probability decides.
    assert fuse(morph(0.45), classifier(0.3, grade=2), SETTINGS).decided_by == "classifier_veto"
    # Both heads at "no fracture": vetoed (with a note), as in test_severe_measured_collapse...
    assert fuse(morph(0.55), classifier(0.3, grade=0), SETTINGS).decided_by == "classifier_veto"


def test_classifier_fracture_with_both_grades_0_is_unconfirmed():
    fused = fuse(morph(0.05), classifier(0.7, grade=0, confidence=0.5), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (0, "unconfirmed")
    # A confident grade 2 with a fracture probability under the threshold: the heads disagree.
    inconsistent = fuse(morph(0.05), classifier(0.3, grade=2, confidence=0.95), SETTINGS)
    assert (inconsistent.genant_grade, inconsistent.decided_by) == (0, "no_fracture")


def test_nothing_seen_is_no_fracture():
    fused = fuse(morph(0.1), classifier(0.05), SETTINGS)
    assert (fused.genant_grade, fused.decided_by) == (0, "no_fracture")


def test_with_the_rule_on_a_likely_grade_3_is_graded_3_even_when_grade_2_is_likelier():
    """fresh2 T11, a true grade 3 read as grade 2: loss 20%, grade probabilities 0/0/0.66/0.34.
    The rule is off by default (it raised only true grade-2 bodies on 400 held-out phantoms):
    on at 0.25 here."""
    raised = GradingSettings(grade3_probability=0.25)
    output = ClassifierOutput(1.0, (0.0, 0.001, 0.663, 0.336))
    fused = fuse(morph(0.198), output, raised)
    assert (fused.genant_grade, fused.decided_by, fused.classifier_grade) == (3, "classifier", 2)
    assert any("gives grade 3 a probability of 0.34 (its most likely grade is 2)" in n for n in fused.notes)
    # Under the setting's bar the most likely grade stands; at 1 the rule is off.
    assert fuse(morph(0.198), ClassifierOutput(1.0, (0.0, 0.001, 0.8, 0.199)), raised).genant_grade == 2
    assert fuse(morph(0.198), output, GradingSettings(grade3_probability=1.0)).genant_grade == 2
    assert fuse(morph(0.198), output, SETTINGS).genant_grade == 2  # the default: off
    # Even a grade-1 call with a 0.38 grade-3 probability (fresh2 T3, a true grade 3).
    assert fuse(morph(0.322), ClassifierOutput(0.993, (0.024, 0.458, 0.138, 0.38)), raised).genant_grade == 3
    # The fracture head still decides whether there is a fracture at all.
    vetoed = fuse(morph(0.30), ClassifierOutput(0.2, (0.5, 0.1, 0.1, 0.3)), raised)
    assert (vetoed.genant_grade, vetoed.decided_by) == (0, "classifier_veto")
    # Measured grade 3 already: nothing raised, the morphometry decided.
    measured = fuse(morph(0.45), output, raised)
    assert (measured.genant_grade, measured.decided_by) == (3, "morphometry") and measured.notes == ()
    # Only a fracture the grade head sees: a most likely grade 0 stays unconfirmed.
    flat = fuse(morph(0.05), ClassifierOutput(0.9, (0.4, 0.1, 0.2, 0.3)), raised)
    assert (flat.genant_grade, flat.decided_by) == (0, "unconfirmed")
    # One note, not also the generic "graded by the classifier above the morphometric grade".
    assert len(fuse(morph(0.198), output, raised).notes) == 1


def test_rule_parameters_come_from_the_settings():
    lenient = GradingSettings(severe_override_margin=0.0, fracture_probability_threshold=0.3)
    assert fuse(morph(0.22), classifier(0.35), lenient).decided_by == "morphometry"
    assert fuse(morph(0.22), classifier(0.25), lenient).decided_by == "classifier_veto"
    assert fuse(morph(0.41), classifier(0.1), lenient).notes  # noted from 40% + 0%
    assert not fuse(morph(0.41), classifier(0.1), SETTINGS).notes


def test_a_positive_grade_always_has_a_probability_at_or_above_the_threshold():
    seen = set()
    outputs = [classifier(probability, grade, confidence) for probability, grade, confidence
               in itertools.product((0.0, 0.3, 0.5, 0.7, 1.0), range(4), (0.4, 0.85))]
    outputs += [ClassifierOutput(probability, (0.05, 0.3, 0.35, 0.3)) for probability in (0.3, 0.7)]
    rule_on = GradingSettings(grade3_probability=0.25)  # off by default; its raise is checked too
    cases = itertools.product((None, 0.0, 0.1, 0.22, 0.3, 0.45, 0.6), outputs, (SETTINGS, rule_on))
    raises = 0
    for loss, output, settings in cases:
        probability = output.fracture_probability
        fused = fuse(None if loss is None else morph(loss), output, settings)
        seen.add(fused.decided_by)
        assert fused.decided_by in DECISIONS
        assert 0 <= fused.genant_grade <= 3
        if fused.decided_by != "severe_collapse":
            assert fused.fracture_probability == probability  # the classifier's
        if fused.genant_grade >= 1:
            assert fused.fracture_probability >= SETTINGS.fracture_probability_threshold
            # never below either source (under severe_collapse the morphometric grade is 3); above
            # both only when the grade-3 probability made it 3, which the notes say
            either = max(fused.classifier_grade, fused.morphometric_grade or 0)
            raised = any("gives grade 3 a probability" in note for note in fused.notes)
            assert fused.genant_grade == (3 if raised else either)
            assert raised == (either < 3 <= fused.genant_grade)
            raises += raised
        else:
            assert probability < SETTINGS.fracture_probability_threshold or fused.decided_by == "unconfirmed"
    assert raises > 0  # the grade-3 raise was exercised
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
