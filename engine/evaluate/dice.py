"""Dice of the vertebral bodies on the model grid, truth brought over through the affines.

The truth labels live on the screened series' grid (any spacing, any orientation); the
prediction lives on the model grid (canonical orientation, model spacing, padded). Each
model voxel centre is mapped to LPS millimetres by the model affine and on to the truth
grid by the inverse of the truth affine, and takes the label of the nearest truth voxel
(0 outside the truth grid). Comparing on the model grid judges the segmentation at the
resolution it was made, and mapping points rather than resampling masks keeps this exact
for any pair of affines (flips, permutations, different spacings).

Voxels whose truth is :data:`~engine.evaluate.truth.PARTIAL_LABEL` (a body cut by the edge
of the field of view) count for neither side.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from engine.evaluate.truth import PARTIAL_LABEL
from engine.volume import index_to_lps

CENTROID_TOLERANCE_MM = 1.0
"""Largest distance between a truth centroid and its label's centroid through the affine
for the affine to be accepted as the label volume's own."""


TIE_BREAK = 0.5 + 1e-6
"""Added before flooring: the nearest voxel, a centre exactly halfway going to the higher
index (grids in a 3:2 ratio put many points exactly halfway), however the float rounds."""


def flipped(affine: np.ndarray, shape: Sequence[int], axes: Sequence[int]) -> np.ndarray:
    """The affine of the same grid read with ``axes`` reversed (index i -> n - 1 - i)."""
    flip = np.eye(4)
    for axis in axes:
        flip[axis, axis] = -1.0
        flip[axis, 3] = shape[axis] - 1
    return np.asarray(affine, float) @ flip


def label_centroids(labels: np.ndarray, label_values: Sequence[int]) -> np.ndarray:
    """Mean voxel index (N, 3) of each label value; NaN for a value absent from ``labels``.

    One pass finds every label's bounding box; each centroid is then taken inside its box,
    so a full-size volume is never copied or converted.
    """
    boxes = ndimage.find_objects(labels)
    out = np.full((len(label_values), 3), np.nan)
    for n, value in enumerate(label_values):
        box = boxes[value - 1] if 0 < value <= len(boxes) else None
        if box is None:
            continue
        found = np.nonzero(labels[box] == value)
        out[n] = [axis.mean() + s.start for axis, s in zip(found, box)]
    return out


def labels_affine_from_truth(
    labels: np.ndarray,
    candidate: np.ndarray,
    centroids_lps: Sequence[tuple[float, float, float]],
    label_values: Sequence[int],
    tolerance_mm: float = CENTROID_TOLERANCE_MM,
) -> np.ndarray | None:
    """The affine, among ``candidate`` and its axis flips, under which each label's centroid
    lands on its truth centroid; None when none does.

    The truth centroids were computed from the labels, so they pin the label grid down.
    This guards against the flipped-mask mistake: the screened series may be stored in
    the opposite slice order from the label volume (head-first phantoms are written top
    down, the DICOM loader stacks slices bottom up), and a wrong flip would still give a
    plausible-looking, wrong Dice.
    """
    if not label_values:
        return None
    centres = label_centroids(labels, label_values)
    present = np.all(np.isfinite(centres), axis=1)
    if not present.any():
        return None
    truth = np.asarray(centroids_lps, dtype=float)[present]
    centres = centres[present]
    best, best_error = None, np.inf
    for count in range(4):
        for axes in itertools.combinations(range(3), count):
            affine = flipped(candidate, labels.shape, axes)
            error = float(np.max(np.linalg.norm(index_to_lps(affine, centres) - truth, axis=1)))
            if error < best_error:
                best, best_error = affine, error
    return best if best_error <= tolerance_mm else None


def truth_on_grid(
    labels: np.ndarray,
    labels_affine: np.ndarray,
    grid_affine: np.ndarray,
    grid_shape: tuple[int, int, int],
) -> np.ndarray:
    """``labels`` sampled (nearest neighbour, ties to the higher index) at every voxel centre
    of another grid, uint8; 0 where a centre falls outside ``labels``.

    When the two grids' axes are parallel (the usual case: both axis-aligned in LPS) each
    truth index depends on one grid axis only and the whole grid is one fancy index;
    otherwise it is done one axis-0 plane at a time, so the index arithmetic never holds
    more than one plane of coordinates.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3-D, got shape {labels.shape}")
    grid_to_labels = np.linalg.inv(np.asarray(labels_affine, float)) @ np.asarray(grid_affine, float)
    linear, offset = grid_to_labels[:3, :3], grid_to_labels[:3, 3]
    significant = np.abs(linear) > 1e-9
    if np.all(significant.sum(axis=1) == 1) and np.all(significant.sum(axis=0) == 1):
        return _sample_parallel(labels, linear, offset, grid_shape)
    return _sample_planes(labels, linear, offset, grid_shape)


def _sample_planes(
    labels: np.ndarray, linear: np.ndarray, offset: np.ndarray, grid_shape: tuple[int, int, int]
) -> np.ndarray:
    """Nearest-neighbour sampling for any pair of grids, one grid plane at a time."""
    limits = np.asarray(labels.shape)
    _, rows, cols = grid_shape
    jj, ii = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
    plane_part = jj[..., None] * linear[:, 1] + ii[..., None] * linear[:, 2] + offset  # (rows, cols, 3)
    out = np.zeros(grid_shape, dtype=np.uint8)
    for k in range(grid_shape[0]):
        index = np.floor(plane_part + k * linear[:, 0] + TIE_BREAK).astype(np.int64)
        inside = np.all((index >= 0) & (index < limits), axis=-1)
        if inside.any():
            picked = index[inside]
            out[k][inside] = labels[picked[:, 0], picked[:, 1], picked[:, 2]]
    return out


def _sample_parallel(
    labels: np.ndarray, linear: np.ndarray, offset: np.ndarray, grid_shape: tuple[int, int, int]
) -> np.ndarray:
    """Nearest-neighbour sampling when each labels axis follows exactly one grid axis."""
    indices, inside = [], np.ones(grid_shape, dtype=bool)
    for axis in range(3):
        along = int(np.flatnonzero(np.abs(linear[axis]) > 1e-9)[0])
        steps = np.arange(grid_shape[along], dtype=float)
        index = np.floor(linear[axis, along] * steps + offset[axis] + TIE_BREAK).astype(np.int64)
        shape = [1, 1, 1]
        shape[along] = grid_shape[along]
        valid = (index >= 0) & (index < labels.shape[axis])
        inside &= valid.reshape(shape)
        indices.append(np.clip(index, 0, labels.shape[axis] - 1).reshape(shape))
    out = labels[indices[0], indices[1], indices[2]]
    out = np.broadcast_to(out, grid_shape).copy() if out.shape != tuple(grid_shape) else out
    out[~inside] = 0
    return out.astype(np.uint8, copy=False)


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice coefficient of two boolean masks; None when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of shapes {a.shape} and {b.shape} cannot be compared")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def content_region(shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The part of a padded model grid that holds image (padding is at the high end)."""
    return tuple(slice(0, int(n)) for n in shape)  # type: ignore[return-value]


def bodies_dice(
    truth_grid: np.ndarray, predicted_body: np.ndarray, exclude_labels: Iterable[int] = ()
) -> float | None:
    """Dice of all bodies together: truth labels > 0 (minus ``exclude_labels``) vs the
    predicted body mask, partial bodies ignored on both sides."""
    excluded = {PARTIAL_LABEL, *exclude_labels}
    ignore = np.isin(truth_grid, list(excluded))
    truth_body = (truth_grid > 0) & ~ignore
    return dice(truth_body, np.asarray(predicted_body, bool) & ~ignore)


def pair_dice(
    truth_grid: np.ndarray, predicted_ids: np.ndarray, pairs: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], float | None]:
    """Dice of each (truth label, predicted id) pair, from one joint count of the grids.

    ``predicted_ids`` holds 0 for no body and ``n`` for predicted body ``n``; voxels of a
    partial truth body are left out.
    """
    if truth_grid.shape != predicted_ids.shape:
        raise ValueError(f"grids of shapes {truth_grid.shape} and {predicted_ids.shape} cannot be compared")
    pairs = list(pairs)
    if not pairs:
        return {}
    t = truth_grid.astype(np.int64).ravel()
    p = predicted_ids.astype(np.int64).ravel()
    keep = ((t > 0) | (p > 0)) & (t != PARTIAL_LABEL)
    t, p = t[keep], p[keep]
    width = int(max(p.max(initial=0), max(q for _, q in pairs))) + 1
    joint = np.bincount(t * width + p, minlength=256 * width).reshape(-1, width)
    truth_sizes, predicted_sizes = joint.sum(axis=1), joint.sum(axis=0)
    out: dict[tuple[int, int], float | None] = {}
    for truth_label, predicted_id in pairs:
        total = int(truth_sizes[truth_label] + predicted_sizes[predicted_id])
        out[(truth_label, predicted_id)] = None if total == 0 else 2.0 * int(joint[truth_label, predicted_id]) / total
    return out
