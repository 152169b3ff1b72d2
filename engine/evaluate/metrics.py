"""Screening metrics as plain functions: ROC AUC, threshold counts, runtime figures.

No machinery here (no files, no models), so every figure of the report can be checked on a
hand-made case. A figure that is undefined (a sensitivity with no positives, an AUC with
one class) is ``None``, never 0 or NaN, so it cannot pass for a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def share(part: float, whole: float) -> float | None:
    """``part / whole``, or None when ``whole`` is 0."""
    return None if whole == 0 else float(part) / float(whole)


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span."""
    values = np.asarray(values, dtype=float).ravel()
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if values.size else np.zeros(0, int)
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auc(scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray) -> float | None:
    """Area under the ROC curve by the rank statistic (Mann-Whitney U / (n+ n-)).

    Tied scores take their mean rank, which counts a tied positive-negative pair as half
    a win: constant scores give exactly 0.5. None when either class is empty.
    """
    scores = np.asarray(scores, dtype=float).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"{scores.size} scores for {positive.size} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite to be ranked")
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = midranks(scores)
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


@dataclass(frozen=True)
class BinaryCounts:
    """Confusion counts of one decision (e.g. 'grade >= 2') over vertebrae or studies."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: BinaryCounts) -> BinaryCounts:
        return BinaryCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def sensitivity(self) -> float | None:
        return share(self.tp, self.tp + self.fn)

    @property
    def ppv(self) -> float | None:
        return share(self.tp, self.tp + self.fp)

    @property
    def specificity(self) -> float | None:
        return share(self.tn, self.tn + self.fp)


def threshold_counts(
    true_grades: Sequence[int | None], predicted_grades: Sequence[int | None], threshold: int
) -> BinaryCounts:
    """Counts of 'grade >= threshold' over vertebra pairs.

    A pair is (true grade, predicted grade). ``None`` on the predicted side is a true
    vertebra no prediction identified: a false negative when it is a fracture, nothing
    otherwise. ``None`` on the true side is a prediction that identifies no vertebra: a
    false positive when it is graded a fracture, nothing otherwise (it is not a vertebra,
    so it cannot be a true negative).
    """
    if len(true_grades) != len(predicted_grades):
        raise ValueError(f"{len(true_grades)} true grades for {len(predicted_grades)} predicted grades")
    tp = fp = fn = tn = 0
    for true, predicted in zip(true_grades, predicted_grades):
        true_pos = true is not None and true >= threshold
        pred_pos = predicted is not None and predicted >= threshold
        if true_pos and pred_pos:
            tp += 1
        elif true_pos:
            fn += 1
        elif pred_pos:
            fp += 1
        elif true is not None and predicted is not None:
            tn += 1
    return BinaryCounts(tp, fp, fn, tn)


def flag_counts(true_flags: Sequence[bool], predicted_flags: Sequence[bool]) -> BinaryCounts:
    """Study-level counts: a study is positive when it holds a fracture of grade >= 2."""
    if len(true_flags) != len(predicted_flags):
        raise ValueError(f"{len(true_flags)} true flags for {len(predicted_flags)} predicted flags")
    pairs = list(zip(map(bool, true_flags), map(bool, predicted_flags)))
    return BinaryCounts(
        tp=sum(t and p for t, p in pairs),
        fp=sum(p and not t for t, p in pairs),
        fn=sum(t and not p for t, p in pairs),
        tn=sum(not t and not p for t, p in pairs),
    )


@dataclass(frozen=True)
class RuntimeSummary:
    studies: int
    median_s: float | None
    p95_s: float | None
    total_s: float


def runtime_summary(seconds: Sequence[float]) -> RuntimeSummary:
    """Median, 95th percentile (linear interpolation) and total of per-study wall times."""
    values = np.asarray(seconds, dtype=float)
    if values.size == 0:
        return RuntimeSummary(0, None, None, 0.0)
    if np.any(values < 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"study times must be finite and >= 0, got {values.tolist()}")
    return RuntimeSummary(
        studies=int(values.size),
        median_s=float(np.median(values)),
        p95_s=float(np.percentile(values, 95)),
        total_s=float(values.sum()),
    )
