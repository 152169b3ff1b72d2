"""One study judged against its truth: pairs, level names, false positives, Dice.

:func:`evaluate_study` is the only place where a :class:`ScreeningResult` meets a
:class:`StudyTruth`; the report only adds up what it returns. A study that was not
analysed (status ``error`` or ``not_eligible``) keeps its status and its true fractures,
and gives no vertebra pairs: the report counts it as unanalysable rather than as misses.
The exception is a study the models could not read (``not_eligible`` with reason
``no_spine`` or ``levels_not_named``, see :data:`SPINE_NOT_READ`): that is the models'
failure on a screening CT, so it is analysed, and every true vertebra in it is missed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from engine.errors import LevelsNotNamedError, NoSpineError
from engine.evaluate.confounders import attribute, attribute_unmatched
from engine.evaluate.dice import (
    TIE_BREAK,
    bodies_dice,
    content_region,
    labels_affine_from_truth,
    pair_dice,
    truth_on_grid,
)
from engine.evaluate.matching import identification_counts, match_centroids
from engine.evaluate.truth import PARTIAL_LABEL, StudyTruth, TruthLabels
from engine.postprocess.levels import BODY
from engine.results import ScreeningResult, VertebraFinding, reason_code
from engine.volume import lps_to_index

if TYPE_CHECKING:
    from engine.screen import StudyOutput

SPINE_NOT_READ = (NoSpineError.code, LevelsNotNamedError.code)
"""Reason codes of a ``not_eligible`` result whose spine the models could not read: evaluated
as a screened study in which nothing was found, not as an unanalysable one."""


def spine_not_read(status: str, reason: str | None) -> bool:
    """Whether a result with this status and reason is a spine the models could not read."""
    return status == "not_eligible" and reason_code(reason) in SPINE_NOT_READ


FRACTURE_GRADE = 2
"""Grade from which a vertebra counts as a fracture for false positives and the study flag."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VertebraPair(_Model):
    """A true vertebra and the prediction that identifies it; either side may be missing."""

    true_level: str | None
    predicted_level: str | None
    true_grade: int | None
    predicted_grade: int | None
    fracture_probability: float | None
    distance_mm: float | None = None
    dice: float | None = None
    on_partial_body: bool = False
    """An unmatched prediction lying on a body cut by the field of view (not in the truth)."""
    true_height_loss: float | None = None
    true_morphology: str | None = None
    measured_height_loss: float | None = None
    """The prediction's height loss where its body was measured (a morphometric grade)."""


class FalsePositive(_Model):
    level: str | None
    """Level of the true vertebra it falls on (nearest one for an unmatched prediction)."""
    predicted_level: str
    predicted_grade: int
    true_grade: int | None
    matched: bool
    confounders: list[str]


class StudyEvaluation(_Model):
    study_instance_uid: str
    status: str
    reason: str | None = None
    seconds: float | None = None
    true_max_grade: int
    true_flag: bool
    true_fractures: int = 0
    """True vertebrae of grade >= 2."""
    predicted_flag: bool | None = None
    true_vertebrae: int = 0
    anatomy: str = "typical"
    """``typical``, or the transitional variant of the true spine (:attr:`StudyTruth.anatomy`)."""
    matched: int = 0
    correct_level: int = 0
    one_level_shifts: int = 0
    larger_shifts: int = 0
    false_detections: int = 0
    """Predictions identifying no true vertebra, not counting those on partial bodies."""
    names_in_doubt: bool = False
    """The result said its level names are in doubt (ScreeningResult.level_naming.in_doubt)."""
    pairs: list[VertebraPair] = []
    false_positives: list[FalsePositive] = []
    bodies_dice: float | None = None
    dice_note: str | None = None

    @property
    def analysed(self) -> bool:
        """Screened: ``ok``, or a spine the models could not read (its vertebrae all missed)."""
        return self.status == "ok" or self.spine_not_read

    @property
    def spine_not_read(self) -> bool:
        return spine_not_read(self.status, self.reason)


def _labels_affine(truth: StudyTruth, labels: TruthLabels | None, output: StudyOutput | None) -> np.ndarray | None:
    """The truth grid's affine, checked against the truth centroids: the one stored in
    labels.npz, else the screened series' grid (the loader may have reversed the slice
    order, so axis flips are tried)."""
    if labels is None or not truth.vertebrae:
        return None
    candidate = labels.affine
    model_input = output.model_input if output is not None else None
    if candidate is None and model_input is not None and tuple(labels.labels.shape) == tuple(model_input.source_shape):
        candidate = model_input.source_affine
    if candidate is None:
        return None
    return labels_affine_from_truth(
        labels.labels, candidate, [v.centroid_lps_mm for v in truth.vertebrae], [v.label for v in truth.vertebrae]
    )


def _label_at(labels: TruthLabels, affine: np.ndarray, lps: tuple[float, float, float]) -> int:
    index = np.floor(lps_to_index(affine, np.asarray(lps)) + TIE_BREAK).astype(int)
    if np.any(index < 0) or np.any(index >= labels.labels.shape):
        return 0
    return int(labels.labels[tuple(index)])


def _on_partial_body(
    prediction: VertebraFinding, truth: StudyTruth, labels: TruthLabels | None, affine: np.ndarray | None
) -> bool:
    """Whether an unmatched prediction lies on a body cut by the field of view: by the label
    under its centroid when the label grid is placed, else by its name."""
    if labels is not None and affine is not None:
        return _label_at(labels, affine, prediction.centroid_lps_mm) == PARTIAL_LABEL
    return prediction.level in truth.excluded_levels


def _dice(
    truth: StudyTruth, output: StudyOutput | None, labels: TruthLabels | None, affine: np.ndarray | None,
    matched: list[tuple[int, str]],
) -> tuple[float | None, dict[int, float | None], str | None]:
    """(bodies Dice, per true-vertebra Dice, note why Dice is missing)."""
    if output is None or output.model_input is None or output.class_map is None:
        return None, {}, "no model-grid output (Dice needs the study screened in this run)"
    if labels is None:
        return None, {}, "no labels.npz beside the truth"
    if affine is None:
        return None, {}, ("the label grid could not be placed: no affine in labels.npz reproduces the truth "
                          f"centroids (labels {labels.labels.shape}, screened series {output.model_input.source_shape})")
    region = content_region(output.model_input.content_shape)
    grid = truth_on_grid(labels.labels, affine, output.model_input.affine, output.model_input.content_shape)
    sacral = [v.label for v in truth.vertebrae if v.level == "S1"]
    overall = bodies_dice(grid, output.class_map[region] == BODY, exclude_labels=sacral)
    ids = np.zeros(grid.shape, dtype=np.uint16)
    id_of: dict[str, int] = {}
    for n, vertebra in enumerate(output.levels.vertebrae if output.levels else [], start=1):
        if vertebra.level != "S1":
            ids[vertebra.mask[region]] = n
            id_of[vertebra.level] = n
    wanted = {t: (truth.vertebrae[t].label, id_of[level]) for t, level in matched if level in id_of
              and truth.vertebrae[t].level != "S1"}
    scores = pair_dice(grid, ids, wanted.values())
    return overall, {t: scores[pair] for t, pair in wanted.items()}, None


def evaluate_study(
    truth: StudyTruth,
    result: ScreeningResult,
    *,
    seconds: float | None = None,
    output: StudyOutput | None = None,
    labels: TruthLabels | None = None,
) -> StudyEvaluation:
    """Judge one screening result against its truth (Dice when ``output`` and ``labels`` are given)."""
    base = {
        "study_instance_uid": truth.study_instance_uid, "status": result.status, "reason": result.reason,
        "seconds": seconds, "true_max_grade": truth.max_grade, "true_flag": truth.max_grade >= FRACTURE_GRADE,
        "true_vertebrae": len(truth.vertebrae), "anatomy": truth.anatomy,
        "true_fractures": sum(v.genant_grade >= FRACTURE_GRADE for v in truth.vertebrae),
    }
    if result.status != "ok" and not spine_not_read(result.status, result.reason):
        return StudyEvaluation(**base)
    predictions = result.vertebrae
    truth_mm = np.array([v.centroid_lps_mm for v in truth.vertebrae]).reshape(-1, 3)
    predicted_mm = np.array([p.centroid_lps_mm for p in predictions]).reshape(-1, 3)
    matching = match_centroids(truth_mm, predicted_mm)
    affine = _labels_affine(truth, labels, output)
    partial = {j for j in matching.unmatched_predictions if _on_partial_body(predictions[j], truth, labels, affine)}
    counts = identification_counts(truth.levels, [p.level for p in predictions], matching)
    matched_levels = [(m.truth, predictions[m.prediction].level) for m in matching.pairs]
    overall, per_vertebra, note = _dice(truth, output, labels, affine, matched_levels)

    pairs: list[VertebraPair] = []
    false_positives: list[FalsePositive] = []
    for t, true in enumerate(truth.vertebrae):
        j = matching.prediction_of(t)
        predicted = predictions[j] if j is not None else None
        match = next((m for m in matching.pairs if m.truth == t), None)
        pairs.append(VertebraPair(
            true_level=true.level, predicted_level=predicted.level if predicted else None,
            true_grade=true.genant_grade, predicted_grade=predicted.genant_grade if predicted else None,
            fracture_probability=predicted.fracture_probability if predicted else None,
            distance_mm=round(match.distance_mm, 2) if match else None, dice=per_vertebra.get(t),
            true_height_loss=true.height_loss, true_morphology=true.morphology,
            measured_height_loss=(predicted.height_loss if predicted is not None
                                  and predicted.morphometric_grade is not None else None),
        ))
        if predicted is not None and predicted.genant_grade >= FRACTURE_GRADE and true.genant_grade == 0:
            false_positives.append(FalsePositive(
                level=true.level, predicted_level=predicted.level, predicted_grade=predicted.genant_grade,
                true_grade=0, matched=True, confounders=attribute(true.level, truth.confounders),
            ))
    for j in matching.unmatched_predictions:
        predicted = predictions[j]
        pairs.append(VertebraPair(
            true_level=None, predicted_level=predicted.level, true_grade=None,
            predicted_grade=predicted.genant_grade, fracture_probability=predicted.fracture_probability,
            on_partial_body=j in partial,
        ))
        if predicted.genant_grade >= FRACTURE_GRADE:
            nearest = None
            if len(truth_mm):
                nearest = truth.vertebrae[int(np.linalg.norm(truth_mm - predicted_mm[j], axis=1).argmin())].level
            false_positives.append(FalsePositive(
                level=nearest, predicted_level=predicted.level, predicted_grade=predicted.genant_grade,
                true_grade=None, matched=False,
                confounders=attribute_unmatched(nearest, predicted.level, truth.confounders, j in partial),
            ))
    return StudyEvaluation(
        **base,
        predicted_flag=result.max_genant_grade >= FRACTURE_GRADE,
        matched=counts.matched, correct_level=counts.correct_level,
        one_level_shifts=counts.one_level_shifts, larger_shifts=counts.larger_shifts,
        false_detections=counts.false_detections - len(partial),
        names_in_doubt=result.level_naming is not None and result.level_naming.in_doubt,
        pairs=pairs, false_positives=false_positives, bodies_dice=overall, dice_note=note,
    )
