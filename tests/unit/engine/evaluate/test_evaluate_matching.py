"""Pairing predicted vertebrae with true ones (VerSe: nearest prediction within 20 mm)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluate.matching import identification_counts, level_shift, match_centroids

# Five true vertebrae 26 mm apart along z (LPS mm), T11..L3.
TRUE_LEVELS = ["T11", "T12", "L1", "L2", "L3"]
TRUE_MM = np.array([[0.0, 10.0, -26.0 * k] for k in range(5)])


def test_each_true_vertebra_takes_its_nearest_prediction_within_20_mm():
    predicted = TRUE_MM[::-1] + np.array([3.0, -2.0, 4.0])  # listed in reverse order, ~5 mm off
    matching = match_centroids(TRUE_MM, predicted)
    assert [(m.truth, m.prediction) for m in matching.pairs] == [(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)]
    assert matching.pairs[0].distance_mm == pytest.approx(np.sqrt(9 + 4 + 16))
    assert matching.unmatched_truth == () and matching.unmatched_predictions == ()


def test_a_far_prediction_is_unmatched_and_its_vertebra_missed():
    predicted = TRUE_MM.copy()
    predicted[2] += [0.0, 0.0, 12.9]  # L1's prediction 12.9 mm up: still nearest to L1
    predicted[4] += [20.5, 0.0, 0.0]  # L3's prediction 20.5 mm to the left: too far
    matching = match_centroids(TRUE_MM, predicted)
    assert [m.truth for m in matching.pairs] == [0, 1, 2, 3]
    assert matching.unmatched_truth == (4,)
    assert matching.unmatched_predictions == (4,)
    counts = identification_counts(TRUE_LEVELS, TRUE_LEVELS, matching)
    assert (counts.true_vertebrae, counts.matched, counts.correct_level, counts.false_detections) == (5, 4, 4, 1)


def test_radius_is_inclusive_at_20_mm():
    truth = np.zeros((1, 3))
    assert len(match_centroids(truth, np.array([[0.0, 20.0, 0.0]])).pairs) == 1
    assert len(match_centroids(truth, np.array([[0.0, 20.01, 0.0]])).pairs) == 0


def test_a_one_level_shift_is_detected_but_not_identified():
    # Every body found where it is, every name one level too cranial (the dominant error).
    predicted_levels = ["T10", "T11", "T12", "L1", "L2"]
    matching = match_centroids(TRUE_MM, TRUE_MM + 1.0)
    counts = identification_counts(TRUE_LEVELS, predicted_levels, matching)
    assert counts.matched == 5
    assert counts.correct_level == 0
    assert counts.one_level_shifts == 5 and counts.larger_shifts == 0


def test_a_prediction_nearest_to_two_vertebrae_goes_to_the_closer_one():
    truth = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -18.0]])  # upper thoracic: 18 mm apart
    predicted = np.array([[0.0, 0.0, -10.0]])  # 10 mm from the first, 8 mm from the second
    matching = match_centroids(truth, predicted)
    assert [(m.truth, m.prediction) for m in matching.pairs] == [(1, 0)]
    assert matching.unmatched_truth == (0,)


def test_empty_sides():
    matching = match_centroids(np.zeros((0, 3)), np.ones((2, 3)))
    assert matching.pairs == () and matching.unmatched_predictions == (0, 1)
    matching = match_centroids(np.ones((3, 3)), np.zeros((0, 3)))
    assert matching.unmatched_truth == (0, 1, 2)


@pytest.mark.parametrize(
    ("predicted", "true", "spine", "shift"),
    [
        ("L1", "T12", ["T11", "T12", "L1"], 1),  # no T13 in this spine: one level
        ("L1", "T12", ["T12", "T13", "L1"], 2),  # T13 present: two levels
        ("T13", "T12", ["T11", "T12", "L1"], 1),  # a T13 named in a spine without one
        ("L1", "T12", [], 1),  # no spine given: variants left out
        ("T10", "T12", ["T11", "T12"], -2),
        ("S1", "L5", ["L4", "L5", "S1"], 1),
        ("L2", "L2", ["L2"], 0),
    ],
)
def test_level_shift_counts_along_the_studys_own_spine(predicted, true, spine, shift):
    assert level_shift(predicted, true, spine) == shift
