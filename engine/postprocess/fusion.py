"""Fuse the morphometric grade with the classifier's opinion into one final grade.

Two sources look at each vertebra:

- the **morphometry** (heights from the segmentation mask) gives a calibrated grade: the
  Genant grade *is* a height-loss measurement, so when a fracture is there, this is the
  grade to report;
- the **classifier** (a 3-D network on the CT crop) sees the bone itself. It is the guard
  against the morphometry's known false positives: a sclerotic metastasis, scoliosis,
  endplate changes (Schmorl's nodes, degenerative sclerosis) or a neighbouring structure
  can distort the mask and fake a height loss, but they do not look like a fracture.

The rule, in order (the first that applies decides; ``decided_by`` names it):

1. ``agreement`` — the morphometry finds a deformity (grade >= 1) and the classifier says a
   fracture is present (probability >= ``fracture_probability_threshold``): the
   morphometric grade.
2. ``severe_collapse`` — the height loss is far beyond grade 3 (>= ``grade3_height_loss`` +
   ``severe_override_margin``, 50% by default): the morphometric grade even if the
   classifier disagrees. A body that lost half its height is not an artefact of the mask,
   and these are the vertebroplasty candidates that must not be missed.
3. ``classifier`` — the classifier says fracture and is confident of a grade >= 1 (its most
   likely grade has probability >= ``classifier_confidence``): the classifier's grade. This
   covers bodies the mask could not measure or measured badly.
4. otherwise grade 0: ``classifier_veto`` when the morphometry saw a deformity the
   classifier did not confirm, ``unconfirmed`` when the classifier alone leaned to fracture
   without confidence, ``no_fracture`` when neither saw one.

The reported ``fracture_probability`` is the classifier's, except under ``severe_collapse``
where it is raised to at least the threshold: a vertebra with grade >= 1 therefore always
has a probability >= the threshold (the reverse need not hold: ``unconfirmed``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.settings import GradingSettings

DECISIONS = ("agreement", "severe_collapse", "classifier", "classifier_veto", "unconfirmed", "no_fracture")


class MorphometricGrade(Protocol):
    height_loss: float
    grade: int


@dataclass(frozen=True)
class ClassifierOutput:
    """What the classifier said about one vertebra."""

    fracture_probability: float
    grade_probabilities: tuple[float, float, float, float]
    """Probabilities of grades 0, 1, 2, 3 (they sum to 1)."""

    def __post_init__(self) -> None:
        values = (self.fracture_probability, *self.grade_probabilities)
        if len(self.grade_probabilities) != 4:
            raise ValueError(f"4 grade probabilities are needed; got {len(self.grade_probabilities)}")
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"classifier probabilities must lie in [0, 1]; got {values}")
        total = sum(self.grade_probabilities)
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"grade probabilities must sum to 1; got {total:.4f}")

    @classmethod
    def from_outputs(cls, fracture_probability: float, grade_probabilities: Sequence[float]) -> ClassifierOutput:
        """From raw model outputs (any float type, any sequence)."""
        return cls(float(fracture_probability), tuple(float(p) for p in grade_probabilities))  # type: ignore[arg-type]

    @property
    def grade(self) -> int:
        """The most likely grade (the lower one on a tie)."""
        return max(range(4), key=lambda g: (self.grade_probabilities[g], -g))

    @property
    def confidence(self) -> float:
        return self.grade_probabilities[self.grade]


@dataclass(frozen=True)
class FusedGrade:
    """The final grade of one vertebra and the parts it was made from."""

    genant_grade: int
    fracture_probability: float
    decided_by: str
    morphometric_grade: int | None
    height_loss: float | None
    classifier_grade: int
    classifier_probability: float


def fuse(
    morphometry: MorphometricGrade | None,
    classifier: ClassifierOutput,
    settings: GradingSettings,
) -> FusedGrade:
    """Final grade of one vertebra; ``morphometry`` is None when the body could not be measured."""
    probability = classifier.fracture_probability
    says_fracture = probability >= settings.fracture_probability_threshold
    morph_grade = None if morphometry is None else morphometry.grade
    loss = None if morphometry is None else morphometry.height_loss

    if morph_grade is not None and morph_grade >= 1 and says_fracture:
        grade, decided_by = morph_grade, "agreement"
    elif loss is not None and loss >= settings.grade3_height_loss + settings.severe_override_margin:
        grade, decided_by = morph_grade, "severe_collapse"
        probability = max(probability, settings.fracture_probability_threshold)
    elif says_fracture and classifier.grade >= 1 and classifier.confidence >= settings.classifier_confidence:
        grade, decided_by = classifier.grade, "classifier"
    elif morph_grade:
        grade, decided_by = 0, "classifier_veto"
    elif says_fracture:
        grade, decided_by = 0, "unconfirmed"
    else:
        grade, decided_by = 0, "no_fracture"
    return FusedGrade(
        genant_grade=int(grade),  # type: ignore[arg-type]
        fracture_probability=float(probability),
        decided_by=decided_by,
        morphometric_grade=morph_grade,
        height_loss=loss,
        classifier_grade=classifier.grade,
        classifier_probability=classifier.fracture_probability,
    )
