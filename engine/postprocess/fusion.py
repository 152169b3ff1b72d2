"""Fuse the morphometric grade with the classifier's opinion into one final grade.

Two sources look at each vertebra:

- the **classifier** (a 3-D network on the CT crop) sees the bone itself: its fracture
  probability decides *whether* a vertebra is fractured. It is what keeps the known mimics
  out: a sclerotic metastasis, scoliosis, metal, endplate changes (Schmorl's nodes,
  degenerative sclerosis) or a body cut by the field of view can distort the segmentation
  mask and fake a height loss, but they do not look like a fracture;
- the **morphometry** (heights from the segmentation mask) gives the Genant grade as a
  height-loss measurement, and the classifier's grade head gives a second opinion on it.

The rule (``decided_by`` names the branch that applied):

1. The classifier's fracture probability is below ``fracture_probability_threshold``:
   grade 0 whatever the morphometry measured (``classifier_veto`` when it measured a
   deformity, ``no_fracture`` otherwise). A measured height loss of at least
   ``grade3_height_loss + severe_override_margin`` (a "gross collapse") is not dropped
   silently: the finding notes it so that a reader can look at that level.
   One exception, ``severe_collapse``: a gross collapse whose classifier grade head
   nonetheless sees a fracture (most likely grade >= 1) keeps its morphometric grade. The
   two heads of the classifier disagree and the measurement breaks the tie: two of the
   three opinions say fracture. (On the phantoms the heads never disagreed this way.)
2. Otherwise the grade is the **higher** of the morphometric grade and the classifier's
   grade: ``agreement`` when they are equal, ``morphometry`` when the height loss is the
   higher, ``classifier`` when the classifier's grade is (or when the body could not be
   measured). When both say grade 0, the vertebra stays grade 0 (``unconfirmed``): the
   fracture head says yes, but neither the grade head nor the measurement sees a deformity.
   The classifier's grade is its most likely grade. Optionally (``grade3_probability`` below
   1; off by default), when that is 1 or 2 and the morphometry does not already say 3, a
   grade-3 probability of at least ``grade3_probability`` makes it 3, and the finding notes it.

Why this rule: measured on 40 held-out clinical-size phantoms (697 vertebrae), checked on
10 more (the offline study behind it saved every vertebra's numbers once and replayed the
rules on them):

- A gross collapse standing against the classifier (the former unconditional
  ``severe_collapse`` override) gave 29 of the 31 false positives of grade >= 2 and no
  true positive on the 40: first/last bodies of the field of view (T1/T2/C7, 19 of 29
  with a one-sided reference), metal, degenerative discs, metastases. All had a
  classifier probability <= 0.07 and a grade head at 0. On the 10 more it caught one
  grade-3 body (T2, a poor mask, Dice 0.36, classifier 0.0009) for 3 false positives.
  True normal bodies read an own-ratio loss >= 20% in 13% of cases (degenerative 32%), so
  the mask alone cannot say "fracture".
- Every true grade >= 2 body of the 40 had a classifier probability >= 0.69 (AUC 0.996).
- Both grades under-read real fractures and neither over-reads much: the segmentation fills
  in wedges and endplate depressions (see :mod:`.morphometry`), so the measured loss of
  grade >= 2 bodies is 0.13 short at the median (from the mask; heights read from the image
  since are much less short, and letting the classifier raise a measured grade by one step
  at most then lost more true fractures than false ones on 100 held-out studies); the
  classifier's most likely grade is below the truth for 8 of 22. Taking the higher grade
  gave grade >= 2 sensitivity 78% and PPV 72% on the 40 (before: 52% / 27%; morphometric
  grade alone, gated: 48% / 79%; classifier grade alone: 70% / 80%) and 67% / 100% on the 10
  (before: 33% / 40%). Requiring a confident classifier grade (the former
  ``classifier_confidence`` setting) only lost true fractures; the setting was removed.

Why ``grade3_probability``: every missed grade-3 fracture the fracture head had confirmed
was read as grade 2 or 1, with a height loss of 10-36% that true grade-2 bodies share (the
mask fills the collapse in). On 100 seen phantoms (dev20, dev30, fresh2; 1812 vertebrae) the
three such bodies (all read as grade 2) had grade-3 probabilities of 0.04, 0.34 and 0.38,
and the 24 true grade-2 bodies read as grade 2 at most 0.11. At 0.25 it shipped on, but on the
400 held-out phantoms screened since (fresh6 to fresh9) it raised three true grade-2 bodies
(0.44, 0.26, 0.31) and no grade 3, none of their 21 missed grade-3 bodies reaching 0.17. The
default was set to 1, off, as decided beforehand for this outcome.

``fracture_probability`` is the classifier's, except under ``severe_collapse`` where it is
raised to the threshold: grade >= 1 therefore always comes with a probability >= the
threshold (the reverse need not hold: ``unconfirmed``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.settings import GradingSettings

DECISIONS = (
    "agreement", "morphometry", "classifier", "unconfirmed", "severe_collapse", "classifier_veto", "no_fracture",
)


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
    notes: tuple[str, ...] = ()
    """What a reader should know about how the grade was reached (for the finding's notes)."""


def fuse(
    morphometry: MorphometricGrade | None,
    classifier: ClassifierOutput,
    settings: GradingSettings,
) -> FusedGrade:
    """Final grade of one vertebra; ``morphometry`` is None when the body could not be measured."""
    probability = classifier.fracture_probability
    morph_grade = None if morphometry is None else morphometry.grade
    loss = None if morphometry is None else morphometry.height_loss
    notes: list[str] = []
    gross_collapse = loss is not None and loss >= settings.grade3_height_loss + settings.severe_override_margin

    if probability >= settings.fracture_probability_threshold:
        classifier_grade = classifier.grade
        severe_probability = classifier.grade_probabilities[3]
        # Raised only where it changes the grade: a fracture the grade head sees (most likely
        # grade 1 or 2) that neither source already grades 3.
        raised = (1 <= classifier.grade < 3 and (morph_grade or 0) < 3
                  and severe_probability >= settings.grade3_probability)
        if raised:
            classifier_grade = 3
            notes.append(
                f"the classifier gives grade 3 a probability of {severe_probability:.2f} "
                f"(its most likely grade is {classifier.grade}): graded 3 so that a severe fracture is not under-read"
            )
        grade = max(morph_grade or 0, classifier_grade)
        if grade == 0:
            decided_by = "unconfirmed"
        elif morph_grade == classifier_grade:
            decided_by = "agreement"
        elif morph_grade is not None and morph_grade > classifier_grade:
            decided_by = "morphometry"
        else:
            decided_by = "classifier"
            if morph_grade is not None and not raised:
                notes.append(
                    f"graded {grade} by the classifier, above the morphometric grade {morph_grade} "
                    f"({loss:.0%} height loss): the segmentation tends to fill in a collapsed endplate"
                )
    elif morphometry is not None and gross_collapse and classifier.grade >= 1:
        grade, decided_by = morphometry.grade, "severe_collapse"
        probability = settings.fracture_probability_threshold
        notes.append(
            f"{loss:.0%} height loss measured; the classifier's grade head sees grade {classifier.grade} "
            f"though its fracture probability is {classifier.fracture_probability:.2f}"
        )
    else:
        grade = 0
        decided_by = "classifier_veto" if morph_grade else "no_fracture"
        if gross_collapse:
            notes.append(
                f"{loss:.0%} height loss measured but not confirmed by the classifier "
                f"(fracture probability {probability:.2f}): a mask artefact is likely; review this level"
            )
    return FusedGrade(
        genant_grade=int(grade),
        fracture_probability=float(probability),
        decided_by=decided_by,
        morphometric_grade=morph_grade,
        height_loss=loss,
        classifier_grade=classifier.grade,
        classifier_probability=classifier.fracture_probability,
        notes=tuple(notes),
    )
