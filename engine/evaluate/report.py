"""Adding up study evaluations into the figures outside checks ask for, beside their targets.

Per-vertebra and per-study fracture figures are computed over the *analysed* studies
(status ``ok``); the studies that could not be analysed are reported as a share of the
valid studies, with the true fractures they held, as the commercial tools' figures do
(e.g. "9.4% of scans unanalysable"). A true fracture that no prediction identifies in an
analysed study is a false negative; a fracture call that identifies no true vertebra is a
false positive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from engine.evaluate.confounders import count_by_type
from engine.evaluate.intervals import bootstrap_auc, clustered_proportion
from engine.evaluate.matching import MATCH_RADIUS_MM
from engine.evaluate.metrics import (
    auc,
    flag_counts,
    runtime_summary,
    share,
    threshold_counts,
)
from engine.evaluate.study import FRACTURE_GRADE, StudyEvaluation, VertebraPair

T = TypeVar("T")

GRADE_THRESHOLDS = (1, 2, 3)
UNSCORED_LEVELS = frozenset({"S1"})
"""Levels the classifier does not score (their probability is a placeholder): left out of
the AUCs, kept in the grade counts since their grades are reported like any other."""

TARGETS: tuple[tuple[str, str, float], ...] = (
    ("level_identification", "level identification", 0.99),
    ("sensitivity_grade2", "sensitivity, grade >= 2", 0.95),
    ("ppv_grade2", "PPV, grade >= 2", 0.95),
    ("sensitivity_grade3", "sensitivity, grade 3", 0.98),
    ("auc_grade2", "per-vertebra AUC, grade >= 2", 0.97),
)
"""(figure, label, minimum) of the project's acceptance targets."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudyCounts(_Model):
    valid: int
    analysed: int
    not_eligible: int
    error: int
    unanalysable_share: float | None
    fractures_in_unanalysable: int
    """True grade >= 2 vertebrae in studies that could not be analysed."""
    missing_results: int = 0
    """Studies with truth but no result line (evaluating a results file); not counted as valid."""
    spine_not_read: int = 0
    """Analysed studies returned not_eligible because the models could not read the spine
    (``no_spine``, ``levels_not_named``): every true vertebra in them counts as missed."""


class AnatomyIdentification(_Model):
    """Level identification over the analysed studies of one anatomy (``typical`` or a
    transitional variant): rib variants are where the names go wrong."""

    anatomy: str
    studies: int
    true_vertebrae: int
    correct_level: int
    level_identification: float | None


class Identification(_Model):
    match_radius_mm: float
    true_vertebrae: int
    detected: int
    detection_rate: float | None
    correct_level: int
    level_identification: float | None
    one_level_shifts: int
    larger_shifts: int
    false_detections: int
    ignored_partial_bodies: int
    studies_in_doubt: int = 0
    """Studies whose result said their level names are in doubt."""
    misnamed: int = 0
    """Detected vertebrae named wrong."""
    misnamed_in_doubt: int = 0
    """Of those, the ones in studies whose result said so."""
    by_anatomy: list[AnatomyIdentification] = []
    """Typical spines first, then each transitional variant."""


class ThresholdFigures(_Model):
    threshold: int
    tp: int
    fp: int
    fn: int
    tn: int
    sensitivity: float | None
    ppv: float | None


class FractureDetection(_Model):
    auc_grade1: float | None
    auc_grade2: float | None
    auc_pairs: int
    """Matched pairs the AUCs are computed over (predictions named S1 are not scored)."""
    thresholds: list[ThresholdFigures]
    missed_fractures: int
    """True grade >= 2 vertebrae no prediction identified (counted as false negatives)."""


class FlagFigures(_Model):
    tp: int
    fp: int
    fn: int
    tn: int
    sensitivity: float | None
    specificity: float | None


class FalsePositives(_Model):
    total: int
    """Fracture calls (grade >= 2) on a true grade 0 vertebra or on no true vertebra."""
    by_confounder: dict[str, int]
    on_grade1: int = 0
    """Grade >= 2 calls on a true grade 1 vertebra: false positives for the grade >= 2 PPV,
    over-grading rather than a fracture from nothing, so not attributed to confounders."""


class DiceFigures(_Model):
    studies: int
    mean_bodies_dice: float | None
    min_bodies_dice: float | None
    mean_vertebra_dice: float | None
    vertebra_pairs: int
    note: str | None


class HeightLossError(_Model):
    """Measured height loss minus the true loss, over the matched bodies of one true
    morphology that were measured (``none`` for normal bodies)."""

    morphology: str
    bodies: int
    median_error: float
    mean_absolute_error: float


class Runtime(_Model):
    studies: int
    median_s: float | None
    p95_s: float | None
    total_s: float


class TargetCheck(_Model):
    figure: str
    label: str
    value: float | None
    target: float
    met: bool
    """The value is at least the target (the point estimate decides)."""
    interval: tuple[float, float] | None = None
    """95% interval of the value, the study being the unit of chance (:mod:`.intervals`)."""

    @property
    def settled(self) -> bool:
        """The whole interval lies on one side of the target: met, or missed, beyond this
        set's noise. False without an interval."""
        return self.interval is not None and (self.interval[0] >= self.target or self.interval[1] < self.target)

    @property
    def verdict(self) -> str:
        """``met`` or ``not met`` when the interval settles it (its side decides: a bootstrap
        interval need not hold the point estimate), else the point estimate's reading
        ``within noise``."""
        if self.settled:
            return "met" if self.interval[0] >= self.target else "not met"  # type: ignore[index]
        return f"{'met' if self.met else 'not met'}, within noise"


class EvaluationReport(_Model):
    source: str
    studies: StudyCounts
    identification: Identification
    fracture: FractureDetection
    flag: FlagFigures
    false_positives: FalsePositives
    dice: DiceFigures
    height_loss: list[HeightLossError] = []
    runtime: Runtime
    targets: list[TargetCheck]
    per_study: list[StudyEvaluation]

    def figure(self, name: str) -> float | None:
        """A headline figure by its name in :data:`TARGETS`."""
        if name == "level_identification":
            return self.identification.level_identification
        if name == "auc_grade2":
            return self.fracture.auc_grade2
        kind, grade = name.rsplit("_grade", 1)
        row = next(t for t in self.fracture.thresholds if t.threshold == int(grade))
        return getattr(row, kind)

    @property
    def all_targets_met(self) -> bool:
        return all(t.met for t in self.targets)


def _intervals(analysed: Sequence[StudyEvaluation]) -> dict[str, tuple[float, float] | None]:
    """95% interval of each target figure, the study being the unit (see :mod:`.intervals`)."""
    found: dict[str, tuple[float, float] | None] = {
        "level_identification": clustered_proportion(
            [e.correct_level for e in analysed], [e.true_vertebrae for e in analysed]),
    }
    for threshold in (2, 3):
        counts = [threshold_counts([p.true_grade for p in e.pairs], [p.predicted_grade for p in e.pairs], threshold)
                  for e in analysed]
        found[f"sensitivity_grade{threshold}"] = clustered_proportion(
            [c.tp for c in counts], [c.tp + c.fn for c in counts])
        found[f"ppv_grade{threshold}"] = clustered_proportion([c.tp for c in counts], [c.tp + c.fp for c in counts])
    scored = [[p for p in e.pairs if _scored(p)] for e in analysed]
    found["auc_grade2"] = bootstrap_auc([[p.fracture_probability for p in pairs] for pairs in scored],
                                        [[p.true_grade >= 2 for p in pairs] for pairs in scored])
    return found


def _scored(pair: VertebraPair) -> bool:
    """A pair the AUCs are computed over: a true vertebra, matched, on a scored level."""
    return pair.true_grade is not None and pair.predicted_grade is not None \
        and pair.predicted_level not in UNSCORED_LEVELS


def _grouped(items: Sequence[T], key: Callable[[T], str], first: str) -> list[tuple[str, list[T]]]:
    """``items`` grouped by ``key``: the ``first`` group, then the others by name."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [(name, groups[name]) for name in sorted(groups, key=lambda name: (name != first, name))]


def height_loss_errors(pairs: Sequence[VertebraPair]) -> list[HeightLossError]:
    """Height-loss error by true morphology (normal bodies, ``none``, first), over the pairs
    with both a true and a measured loss: where the morphometry reads wrong, apart from the
    grade rules. A fractured body whose truth names no morphology counts as ``unspecified``."""
    measured = [p for p in pairs if p.true_height_loss is not None and p.measured_height_loss is not None]
    found = []
    for morphology, group in _grouped(
        measured, lambda p: p.true_morphology or ("none" if p.true_grade == 0 else "unspecified"), "none"
    ):
        errors = np.array([p.measured_height_loss - p.true_height_loss for p in group])
        found.append(HeightLossError(morphology=morphology, bodies=len(errors), median_error=float(np.median(errors)),
                                     mean_absolute_error=float(np.mean(np.abs(errors)))))
    return found


def identification_by_anatomy(analysed: Sequence[StudyEvaluation]) -> list[AnatomyIdentification]:
    """Level identification per anatomy of the true spine, typical first."""
    found = []
    for anatomy, group in _grouped(analysed, lambda e: e.anatomy, "typical"):
        true, correct = sum(e.true_vertebrae for e in group), sum(e.correct_level for e in group)
        found.append(AnatomyIdentification(anatomy=anatomy, studies=len(group), true_vertebrae=true,
                                           correct_level=correct, level_identification=share(correct, true)))
    return found


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def build_report(
    evaluations: Sequence[StudyEvaluation],
    source: str,
    *,
    dice_note: str | None = None,
    missing_results: int = 0,
    intervals: bool = True,
) -> EvaluationReport:
    """All the figures of the evaluation from the per-study evaluations; ``intervals=False``
    leaves the targets without their 95% intervals (a report only compared, never printed,
    need not pay for the bootstrap)."""
    analysed = [e for e in evaluations if e.analysed]
    failed = [e for e in evaluations if not e.analysed]
    studies = StudyCounts(
        valid=len(evaluations),
        analysed=len(analysed),
        not_eligible=sum(e.status == "not_eligible" for e in failed),
        error=sum(e.status != "not_eligible" for e in failed),
        unanalysable_share=share(len(failed), len(evaluations)),
        fractures_in_unanalysable=sum(e.true_fractures for e in failed),
        missing_results=missing_results,
        spine_not_read=sum(e.spine_not_read for e in analysed),
    )
    pairs = [p for e in analysed for p in e.pairs]
    true_vertebrae = sum(e.true_vertebrae for e in analysed)
    detected = sum(e.matched for e in analysed)
    correct = sum(e.correct_level for e in analysed)
    identification = Identification(
        match_radius_mm=MATCH_RADIUS_MM,
        true_vertebrae=true_vertebrae,
        detected=detected,
        detection_rate=share(detected, true_vertebrae),
        correct_level=correct,
        level_identification=share(correct, true_vertebrae),
        one_level_shifts=sum(e.one_level_shifts for e in analysed),
        larger_shifts=sum(e.larger_shifts for e in analysed),
        false_detections=sum(e.false_detections for e in analysed),
        ignored_partial_bodies=sum(p.on_partial_body for p in pairs),
        studies_in_doubt=sum(e.names_in_doubt for e in analysed),
        misnamed=detected - correct,
        misnamed_in_doubt=sum(e.matched - e.correct_level for e in analysed if e.names_in_doubt),
        by_anatomy=identification_by_anatomy(analysed),
    )
    matched = [p for p in pairs if _scored(p)]
    scores = [p.fracture_probability for p in matched]
    true_grades = [p.true_grade for p in pairs]
    predicted_grades = [p.predicted_grade for p in pairs]
    thresholds = []
    for threshold in GRADE_THRESHOLDS:
        counts = threshold_counts(true_grades, predicted_grades, threshold)
        thresholds.append(ThresholdFigures(threshold=threshold, tp=counts.tp, fp=counts.fp, fn=counts.fn,
                                           tn=counts.tn, sensitivity=counts.sensitivity, ppv=counts.ppv))
    fracture = FractureDetection(
        auc_grade1=auc(scores, [p.true_grade >= 1 for p in matched]),
        auc_grade2=auc(scores, [p.true_grade >= 2 for p in matched]),
        auc_pairs=len(matched),
        thresholds=thresholds,
        missed_fractures=sum(p.predicted_grade is None and (p.true_grade or 0) >= FRACTURE_GRADE for p in pairs),
    )
    flags = flag_counts([e.true_flag for e in analysed], [bool(e.predicted_flag) for e in analysed])
    fps = [fp for e in analysed for fp in e.false_positives]
    dice_studies = [e.bodies_dice for e in analysed if e.bodies_dice is not None]
    vertebra_dice = [p.dice for p in pairs if p.dice is not None]
    notes = {e.dice_note for e in analysed if e.dice_note}
    runtime = runtime_summary([e.seconds for e in evaluations if e.seconds is not None])
    report = EvaluationReport(
        source=source,
        studies=studies,
        identification=identification,
        fracture=fracture,
        flag=FlagFigures(tp=flags.tp, fp=flags.fp, fn=flags.fn, tn=flags.tn,
                         sensitivity=flags.sensitivity, specificity=flags.specificity),
        false_positives=FalsePositives(
            total=len(fps), by_confounder=count_by_type(fp.confounders for fp in fps),
            on_grade1=sum(p.true_grade == 1 and (p.predicted_grade or 0) >= FRACTURE_GRADE for p in pairs),
        ),
        dice=DiceFigures(
            studies=len(dice_studies), mean_bodies_dice=_mean(dice_studies),
            min_bodies_dice=min(dice_studies) if dice_studies else None,
            mean_vertebra_dice=_mean(vertebra_dice), vertebra_pairs=len(vertebra_dice),
            note=dice_note or ("; ".join(sorted(notes)) if notes else None),
        ),
        height_loss=height_loss_errors(pairs),
        runtime=Runtime(studies=runtime.studies, median_s=runtime.median_s, p95_s=runtime.p95_s,
                        total_s=runtime.total_s),
        targets=[],
        per_study=list(evaluations),
    )
    checks = []
    found = _intervals(analysed) if intervals else {}
    for name, label, minimum in TARGETS:
        value = report.figure(name)
        checks.append(TargetCheck(figure=name, label=label, value=value, target=minimum,
                                  met=value is not None and value >= minimum, interval=found.get(name)))
    return report.model_copy(update={"targets": checks})


def as_json(report: EvaluationReport) -> str:
    return report.model_dump_json(indent=2)
