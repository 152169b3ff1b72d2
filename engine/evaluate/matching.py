"""Pairing predicted vertebrae with true ones, and judging their level names.

The criterion is the VerSe challenge's: a prediction identifies a true vertebra when it is
the prediction nearest to the true centroid and lies within :data:`MATCH_RADIUS_MM` of it
(DICOM patient coordinates, LPS mm). Names play no part in the pairing, so a body found at
the right place but named one level off is *detected* yet *misidentified*: the dominant
failure of level labelling, which the metrics must expose rather than hide.

Pairs are one to one. When one prediction is the nearest of two true vertebrae (upper
thoracic bodies sit ~18 mm apart), the closer true vertebra keeps it and the other stays
unmatched; it does not fall back to its second-nearest prediction, since that prediction
is not the nearest and the criterion would refuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.results import LEVELS

MATCH_RADIUS_MM = 20.0
"""Largest centroid distance at which a prediction identifies a true vertebra (VerSe)."""
VARIANT_LEVELS = frozenset({"T13", "L6"})
"""Levels that exist only in some spines; they do not count as a step in a shift
unless the study's own spine has them."""


@dataclass(frozen=True)
class Match:
    truth: int
    """Index into the true vertebrae."""
    prediction: int
    """Index into the predicted vertebrae."""
    distance_mm: float


@dataclass(frozen=True)
class Matching:
    pairs: tuple[Match, ...]
    unmatched_truth: tuple[int, ...]
    unmatched_predictions: tuple[int, ...]
    """Predictions that identify no true vertebra: false detections."""

    def prediction_of(self, truth: int) -> int | None:
        return next((m.prediction for m in self.pairs if m.truth == truth), None)


def match_centroids(
    truth_mm: np.ndarray, predicted_mm: np.ndarray, radius_mm: float = MATCH_RADIUS_MM
) -> Matching:
    """One-to-one pairs (true, predicted) by the nearest-within-radius criterion.

    ``truth_mm`` is (N, 3) and ``predicted_mm`` (M, 3), LPS millimetres.
    """
    truth_mm = np.asarray(truth_mm, dtype=float).reshape(-1, 3)
    predicted_mm = np.asarray(predicted_mm, dtype=float).reshape(-1, 3)
    if radius_mm <= 0:
        raise ValueError(f"match radius must be positive, got {radius_mm} mm")
    n_truth, n_pred = len(truth_mm), len(predicted_mm)
    if n_truth == 0 or n_pred == 0:
        return Matching((), tuple(range(n_truth)), tuple(range(n_pred)))
    distances = np.linalg.norm(truth_mm[:, None, :] - predicted_mm[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    nearest_mm = distances[np.arange(n_truth), nearest]
    claims: dict[int, int] = {}  # prediction -> the closest true vertebra claiming it
    for truth in np.argsort(nearest_mm, kind="stable"):
        prediction = int(nearest[truth])
        if nearest_mm[truth] <= radius_mm and prediction not in claims:
            claims[prediction] = int(truth)
    pairs = tuple(sorted(
        (Match(truth, prediction, float(distances[truth, prediction])) for prediction, truth in claims.items()),
        key=lambda m: m.truth,
    ))
    matched_truth = {m.truth for m in pairs}
    return Matching(
        pairs=pairs,
        unmatched_truth=tuple(i for i in range(n_truth) if i not in matched_truth),
        unmatched_predictions=tuple(j for j in range(n_pred) if j not in claims),
    )


def level_shift(predicted: str, true: str, spine: Sequence[str] = ()) -> int:
    """Levels from the true name to the predicted one (+ caudal, - cranial, 0 right).

    Counted along the study's own spine when both names are in it (so T12 -> L1 is one
    level in a spine without T13); otherwise along :data:`engine.results.LEVELS` with the
    variant levels the spine lacks left out.
    """
    if predicted in spine and true in spine:
        return list(spine).index(predicted) - list(spine).index(true)
    present = set(spine)
    order = [lv for lv in LEVELS if lv not in VARIANT_LEVELS or lv in present or lv in (predicted, true)]
    return order.index(predicted) - order.index(true)


@dataclass(frozen=True)
class IdentificationCounts:
    true_vertebrae: int = 0
    matched: int = 0
    """True vertebrae a prediction identifies (detected)."""
    correct_level: int = 0
    """Matched true vertebrae whose prediction carries the right level name."""
    one_level_shifts: int = 0
    larger_shifts: int = 0
    false_detections: int = 0
    """Predictions that identify no true vertebra."""

    def __add__(self, other: IdentificationCounts) -> IdentificationCounts:
        return IdentificationCounts(*(a + b for a, b in zip(_values(self), _values(other))))


def _values(counts: IdentificationCounts) -> tuple[int, ...]:
    return (counts.true_vertebrae, counts.matched, counts.correct_level, counts.one_level_shifts,
            counts.larger_shifts, counts.false_detections)


def identification_counts(
    truth_levels: Sequence[str], predicted_levels: Sequence[str], matching: Matching
) -> IdentificationCounts:
    """Detection, naming and shift counts of one study's matching."""
    correct = one = larger = 0
    for match in matching.pairs:
        shift = level_shift(predicted_levels[match.prediction], truth_levels[match.truth], truth_levels)
        if shift == 0:
            correct += 1
        elif abs(shift) == 1:
            one += 1
        else:
            larger += 1
    return IdentificationCounts(
        true_vertebrae=len(truth_levels),
        matched=len(matching.pairs),
        correct_level=correct,
        one_level_shifts=one,
        larger_shifts=larger,
        false_detections=len(matching.unmatched_predictions),
    )
