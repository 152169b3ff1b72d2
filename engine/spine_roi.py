"""Where the spine is on the model grid, so the segmenter runs on that region only.

A TAP CT's axial field of view is 300-460 mm wide; the vertebral column, with its posterior
elements and the rib heads, fills about 100 x 120 mm of it. The segmentation U-Net costs in
proportion to the voxels it is given, so running it on the whole grid spends most of its
time on lungs, bowel and the body wall. It was trained on 96-voxel patches centred on the
spine, so a region around the spine is exactly what it expects to see.

The spine is found without a model: it is the one dense bony structure present in every
axial slab. For each slab of ``SLAB_MM`` the voxels above ``BONE_HU`` are counted per (y, x)
column and the count is smoothed over a vertebra-sized square; its peak is that slab's spine
centre. Ribs are thin and move from slab to slab; the sternum is small; the iliac wings are
lateral and present in a few slabs only, so a running median along the slabs removes them.
The region is the box around the whole path (scoliosis widens it) plus half the configured
edge on each side, rounded up to the grid multiple, along the full height of the study.

Imports numpy and scipy.ndimage only: the Triton pipeline model may run it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BONE_HU = 150.0
"""HU above which a voxel counts as bone when looking for the spine (cancellous bone of an
osteoporotic vertebra is about 100-200 HU, its cortex and the posterior elements far above)."""
SLAB_MM = 32.0
"""Height of the slabs the spine centre is found in (a little more than one vertebra)."""
SMOOTH_MM = 30.0
"""Edge of the square the bone counts are summed over: about a vertebral body's width."""
MEDIAN_SLABS = 5
"""Slabs in the running median that removes a slab whose peak fell on a rib or iliac wing."""
MAX_LATERAL_MM = 60.0
"""Farthest a slab's spine centre may lie left or right of the study's bony midline (a
scoliotic apex is within it; the iliac wings, a hip prosthesis and most of the ribs are not)."""


@dataclass(frozen=True)
class SpineRegion:
    """The in-plane box (y, x voxel bounds, half-open) kept for segmentation, and the path found."""

    lo: tuple[int, int]
    hi: tuple[int, int]
    path: np.ndarray
    """(n_slabs, 3) slab centre z and spine centre (y, x) in voxels; empty when no bone was found."""

    @property
    def shape(self) -> tuple[int, int]:
        return (self.hi[0] - self.lo[0], self.hi[1] - self.lo[1])


def hu_to_unit(hu: float, window: tuple[float, float]) -> float:
    """The model-input value of ``hu`` under the HU window (the preprocessing's normalisation)."""
    low, high = window
    return float(np.clip((hu - low) / (high - low), 0.0, 1.0))


def spine_path(tensor: np.ndarray, spacing_mm: np.ndarray, bone_level: float) -> np.ndarray:
    """(n, 3) rows of slab centre z and the spine centre (y, x), in voxels, one per slab with bone."""
    spacing = np.asarray(spacing_mm, float)
    slab = max(1, int(np.rint(SLAB_MM / spacing[0])))
    size = (max(1, int(np.rint(SMOOTH_MM / spacing[1]))), max(1, int(np.rint(SMOOTH_MM / spacing[2]))))
    densities, centres = [], []
    for z0 in range(0, tensor.shape[0], slab):
        counts = np.count_nonzero(tensor[z0 : z0 + slab] > bone_level, axis=0).astype(np.float32)
        densities.append(ndimage.uniform_filter(counts, size=size, mode="constant"))
        centres.append(z0 + min(slab, tensor.shape[0] - z0) / 2.0)
    if not densities:
        return np.zeros((0, 3))
    stack = np.stack(densities)
    # The midline: the left-right position where bone is densest over the whole study.
    midline = int(np.argmax(stack.sum(axis=(0, 1))))
    reach = int(np.rint(MAX_LATERAL_MM / spacing[2]))
    outside = np.ones(stack.shape[2], dtype=bool)
    outside[max(0, midline - reach) : midline + reach + 1] = False
    stack[:, :, outside] = 0.0
    rows, peaks = [], []
    for z, density in zip(centres, stack):
        y, x = np.unravel_index(int(np.argmax(density)), density.shape)
        rows.append((z, float(y), float(x)))
        peaks.append(float(density[y, x]))
    path, peaks = np.array(rows), np.array(peaks)
    # A slab with hardly any bone (air above the shoulders, a slab past the coverage) says nothing.
    path = path[peaks > 0.2 * peaks.max()] if peaks.max() > 0 else path[:0]
    if len(path) >= 3:
        window = min(MEDIAN_SLABS, len(path) - (1 - len(path) % 2))
        for axis in (1, 2):
            path[:, axis] = ndimage.median_filter(path[:, axis], size=window, mode="nearest")
    return path


def spine_region(
    tensor: np.ndarray,
    spacing_mm: np.ndarray,
    roi_mm: float,
    grid_multiple: int,
    hu_window: tuple[float, float],
) -> SpineRegion:
    """The in-plane box around the spine path, ``roi_mm`` wider than the path, on the grid.

    The whole plane is returned when ``roi_mm`` is 0, when no bone is found, or when the box
    would not be smaller than the grid.
    """
    height, width = tensor.shape[1:]
    whole = SpineRegion((0, 0), (height, width), np.zeros((0, 3)))
    if roi_mm <= 0:
        return whole
    path = spine_path(tensor, spacing_mm, hu_to_unit(BONE_HU, hu_window))
    if len(path) == 0:
        return whole
    spacing = np.asarray(spacing_mm, float)
    lo, hi = [], []
    for axis, extent in ((1, height), (2, width)):
        half = roi_mm / 2.0 / spacing[axis]
        low, high = path[:, axis].min() - half, path[:, axis].max() + half
        size = int(np.ceil((high - low) / grid_multiple)) * grid_multiple
        if size >= extent:
            lo.append(0)
            hi.append(extent)
            continue
        start = int(np.clip(round((low + high - size) / 2.0), 0, extent - size))
        lo.append(start)
        hi.append(start + size)
    return SpineRegion((lo[0], lo[1]), (hi[0], hi[1]), path)
