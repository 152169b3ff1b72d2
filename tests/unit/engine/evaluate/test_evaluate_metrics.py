"""ROC AUC by ranks, threshold counts, study flags and runtime figures on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluate.metrics import (
    BinaryCounts,
    auc,
    flag_counts,
    midranks,
    runtime_summary,
    threshold_counts,
)


def test_auc_perfect_inverse_and_constant():
    positive = [False, False, True, True]
    assert auc([0.1, 0.2, 0.8, 0.9], positive) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], positive) == 0.0
    assert auc([0.4, 0.4, 0.4, 0.4], positive) == 0.5


def test_auc_counts_a_tied_pair_as_half():
    # positives 0.5 and 0.9; negatives 0.2 and 0.5: wins 1 + 0.5 (tie) + 1 + 1 of 4 pairs
    assert auc([0.2, 0.5, 0.5, 0.9], [False, True, False, True]) == pytest.approx(3.5 / 4)


def test_auc_equals_the_pairwise_win_rate_with_many_ties():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, size=60) / 4.0  # five distinct values: ties everywhere
    positive = rng.random(60) < 0.3
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(scores, positive) == pytest.approx(wins / (len(pos) * len(neg)))


def test_auc_is_undefined_with_one_class():
    assert auc([0.1, 0.9], [True, True]) is None
    assert auc([], []) is None


def test_auc_refuses_mismatched_or_non_finite_input():
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        auc([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="finite"):
        auc([0.1, float("nan")], [True, False])


def test_midranks_share_the_mean_rank():
    np.testing.assert_array_equal(midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4.0, 1.0, 4.0, 2.0, 4.0])


# (true grade, predicted grade); None = unmatched on that side
PAIRS = [
    (0, 0), (0, 0), (0, 2),  # a false positive at >= 1 and >= 2
    (1, 0),  # a missed mild fracture
    (1, 2),  # over-graded mild: a TP at >= 1, an FP at >= 2
    (2, 2), (2, 1),  # one moderate found, one under-graded
    (3, 3), (3, 2),  # severe: right, and under-graded to 2
    (3, None),  # a severe fracture no prediction identified
    (None, 3),  # a fracture called where no vertebra is
    (None, 0),  # a normal false detection: nothing at any threshold
]


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (1, BinaryCounts(tp=5, fp=2, fn=2, tn=2)),
        (2, BinaryCounts(tp=3, fp=3, fn=2, tn=3)),
        (3, BinaryCounts(tp=1, fp=1, fn=2, tn=7)),
    ],
)
def test_threshold_counts_at_each_grade(threshold, expected):
    true, predicted = zip(*PAIRS)
    assert threshold_counts(true, predicted, threshold) == expected


def test_sensitivity_and_ppv_follow_from_the_counts():
    true, predicted = zip(*PAIRS)
    counts = threshold_counts(true, predicted, 2)
    assert counts.sensitivity == pytest.approx(3 / 5)
    assert counts.ppv == pytest.approx(3 / 6)
    assert counts.specificity == pytest.approx(3 / 6)
    assert BinaryCounts().sensitivity is None and BinaryCounts().ppv is None


def test_a_missed_fracture_is_a_false_negative():
    assert threshold_counts([2, 0], [None, 0], 2) == BinaryCounts(tp=0, fp=0, fn=1, tn=1)
    assert threshold_counts([2, 0], [None, 0], 2).sensitivity == 0.0


def test_counts_add():
    assert BinaryCounts(1, 2, 3, 4) + BinaryCounts(10, 20, 30, 40) == BinaryCounts(11, 22, 33, 44)


def test_flag_counts():
    counts = flag_counts([True, True, False, False, False], [True, False, True, False, False])
    assert counts == BinaryCounts(tp=1, fp=1, fn=1, tn=2)
    assert counts.sensitivity == 0.5 and counts.specificity == pytest.approx(2 / 3)


def test_runtime_summary():
    summary = runtime_summary([4.0, 1.0, 2.0, 3.0, 10.0])
    assert summary.studies == 5
    assert summary.median_s == 3.0
    assert summary.p95_s == pytest.approx(4.0 + 0.8 * 6.0)  # linear between the two largest
    assert summary.total_s == 20.0
    assert runtime_summary([]).median_s is None
    with pytest.raises(ValueError, match="finite and >= 0"):
        runtime_summary([1.0, -2.0])
