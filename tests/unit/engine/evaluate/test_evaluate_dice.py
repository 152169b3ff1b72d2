"""Dice on the model grid, the truth brought over through the two affines."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluate.dice import (
    _sample_planes,
    bodies_dice,
    dice,
    flipped,
    label_centroids,
    labels_affine_from_truth,
    pair_dice,
    truth_on_grid,
)
from engine.evaluate.truth import PARTIAL_LABEL
from engine.volume import index_to_lps

BOX_LO = np.array([-15.0, -10.0, -20.0])  # LPS mm (x, y, z)
BOX_HI = np.array([15.0, 12.0, 25.0])


def sagittal_grid() -> tuple[np.ndarray, tuple[int, int, int]]:
    """A source grid unlike the model's: sagittal slices along x, rows running to the feet,
    columns posterior, spacings 1.2 / 1.0 / 0.9 mm."""
    affine = np.eye(4)
    affine[:3, 0] = (1.2, 0.0, 0.0)
    affine[:3, 1] = (0.0, 0.0, -1.0)
    affine[:3, 2] = (0.0, 0.9, 0.0)
    affine[:3, 3] = (-50.0, -45.0, 60.0)
    return affine, (70, 130, 100)


def canonical_grid() -> tuple[np.ndarray, tuple[int, int, int]]:
    """The model grid: axis0 Superior, axis1 Posterior, axis2 Left, 2 mm."""
    affine = np.zeros((4, 4))
    affine[:3, :3] = [[0.0, 0.0, 2.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0]]
    affine[:3, 3] = (-48.0, -48.0, -70.0)
    affine[3, 3] = 1.0
    return affine, (72, 48, 48)


def box_mask(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Voxels whose centre lies in the LPS box (painted directly on that grid)."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    lps = index_to_lps(affine, index)
    return np.all((lps >= BOX_LO) & (lps <= BOX_HI), axis=-1)


def test_a_box_maps_onto_a_grid_of_other_spacing_and_orientation():
    source_affine, source_shape = sagittal_grid()
    labels = box_mask(source_affine, source_shape).astype(np.uint8) * 7
    model_affine, model_shape = canonical_grid()
    on_model = truth_on_grid(labels, source_affine, model_affine, model_shape)
    assert set(np.unique(on_model)) == {0, 7}
    prediction = box_mask(model_affine, model_shape)  # the same box, drawn on the model grid
    assert dice(on_model > 0, prediction) > 0.97
    # the flipped-mask mistake: reading the source slices in reverse order
    wrong = truth_on_grid(labels, flipped(source_affine, source_shape, [0]), model_affine, model_shape)
    assert dice(wrong > 0, prediction) < 0.5


def test_the_fast_and_the_general_sampling_agree():
    source_affine, source_shape = sagittal_grid()
    labels = np.random.default_rng(1).integers(0, 5, size=source_shape).astype(np.uint8)
    model_affine, model_shape = canonical_grid()
    to_labels = np.linalg.inv(source_affine) @ model_affine
    general = _sample_planes(labels, to_labels[:3, :3], to_labels[:3, 3], model_shape)
    np.testing.assert_array_equal(truth_on_grid(labels, source_affine, model_affine, model_shape), general)


def test_an_oblique_grid_is_sampled_voxel_by_voxel_right():
    source_affine, source_shape = sagittal_grid()
    labels = np.random.default_rng(2).integers(0, 5, size=source_shape).astype(np.uint8)
    angle = np.deg2rad(20.0)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
    model_affine, _ = canonical_grid()
    model_affine[:3, :3] = rotation @ model_affine[:3, :3]
    shape = (9, 8, 7)
    sampled = truth_on_grid(labels, source_affine, model_affine, shape)
    for index in np.ndindex(shape):
        source = np.linalg.inv(source_affine) @ model_affine @ np.array([*index, 1.0])
        nearest = np.floor(source[:3] + 0.5 + 1e-6).astype(int)
        inside = np.all((nearest >= 0) & (nearest < source_shape))
        assert sampled[index] == (labels[tuple(nearest)] if inside else 0), index


def test_same_grid_is_an_exact_copy_and_outside_reads_zero():
    affine, shape = canonical_grid()
    labels = np.random.default_rng(0).integers(0, 4, size=shape).astype(np.uint8)
    np.testing.assert_array_equal(truth_on_grid(labels, affine, affine, shape), labels)
    shifted = affine.copy()
    shifted[:3, 3] += 2.0 * np.array([0.0, 0.0, 10.0])  # ten voxels up
    moved = truth_on_grid(labels, affine, shifted, shape)
    np.testing.assert_array_equal(moved[:-10], labels[10:])
    assert not moved[-10:].any()


def test_dice_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 voxels
    b[1:3] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) is None
    with pytest.raises(ValueError, match="cannot be compared"):
        dice(a, b[:2])


def test_bodies_dice_ignores_partial_bodies_and_excluded_labels():
    truth = np.array([1, 1, 2, 2, PARTIAL_LABEL, PARTIAL_LABEL, 3, 0])
    predicted = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)  # finds 1 and 2, also the partial body
    assert bodies_dice(truth, predicted, exclude_labels=[3]) == 1.0
    assert bodies_dice(truth, predicted) == pytest.approx(2 * 4 / (5 + 4))


def test_pair_dice_per_vertebra():
    truth = np.array([1, 1, 1, 1, 2, 2, 0, PARTIAL_LABEL])
    ids = np.array([5, 5, 5, 0, 6, 6, 6, 6])
    scores = pair_dice(truth, ids, [(1, 5), (2, 6), (2, 5)])
    assert scores[(1, 5)] == pytest.approx(2 * 3 / (4 + 3))
    assert scores[(2, 6)] == pytest.approx(2 * 2 / (2 + 3))  # the partial voxel is left out
    assert scores[(2, 5)] == 0.0


def test_the_label_grid_is_found_among_the_flips_from_truth_centroids():
    affine, shape = sagittal_grid()
    labels = np.zeros(shape, np.uint8)
    labels[10:20, 30:50, 20:40] = 1
    labels[40:55, 80:100, 60:70] = 2
    centroids = index_to_lps(affine, label_centroids(labels, [1, 2]))
    loaded = flipped(affine, shape, [0])  # a loader that stacked the slices the other way
    np.testing.assert_allclose(labels_affine_from_truth(labels, loaded, centroids, [1, 2]), affine)
    np.testing.assert_allclose(labels_affine_from_truth(labels, affine, centroids, [1, 2]), affine)
    elsewhere = affine.copy()
    elsewhere[:3, 3] += 15.0
    assert labels_affine_from_truth(labels, elsewhere, centroids, [1, 2]) is None


def test_label_centroids_mark_absent_labels():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[1:3, 0, 0] = 2
    centres = label_centroids(labels, [2, 1, 9])
    np.testing.assert_allclose(centres[0], [1.5, 0.0, 0.0])
    assert np.isnan(centres[1]).all() and np.isnan(centres[2]).all()
