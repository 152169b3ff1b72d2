"""What is cut out of the model grid around each vertebra: classifier crops and soft body masks.

Shared by the in-process screening core (:mod:`engine.screen`) and the Triton pipeline model
(:mod:`engine.serving.pipeline_core`), so that both cut exactly the same voxels. It imports
numpy, scipy.ndimage and :mod:`engine.postprocess.levels` only: it runs inside the Triton
Python backend's own environment, where DALI and pydicom are absent.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.postprocess.levels import BODY, SACRUM, LabelledVertebra

MASK_MARGIN = 4
"""Voxels of margin around a body's bounding box when it is handed to morphometry."""
UNCLASSIFIED_LEVELS = frozenset({"S1"})
"""Levels the fracture classifier is not run on (S1 is the sacral reference, never graded)."""


def is_classified(level: str) -> bool:
    """Whether the classifier grades this level."""
    return level not in UNCLASSIFIED_LEVELS


def probability_channel(level: str) -> int:
    """Segmentation channel whose probability outlines this level: sacrum for S1, body otherwise."""
    return SACRUM if level == "S1" else BODY


def cut_crops(tensor: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """Cubic crops (N, 1, size, size, size) centred on voxel indices; outside reads as 0 (air)."""
    crops = np.zeros((len(centres), 1, size, size, size), dtype=np.float32)
    half = size // 2
    for n, centre in enumerate(np.rint(centres).astype(int)):
        lo = centre - half
        src_lo = np.maximum(lo, 0)
        src_hi = np.minimum(lo + size, tensor.shape)
        if np.any(src_hi <= src_lo):
            continue
        dst_lo = src_lo - lo
        dst_hi = dst_lo + (src_hi - src_lo)
        crops[n, 0, dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] = tensor[
            src_lo[0] : src_hi[0], src_lo[1] : src_hi[1], src_lo[2] : src_hi[2]
        ]
    return crops


def soft_crop_bounds(box: tuple[slice, slice, slice], grid_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corner (voxel indices) of a body's bounding box plus :data:`MASK_MARGIN`."""
    shape = np.array(grid_shape)
    lo = np.maximum(np.array([b.start for b in box]) - MASK_MARGIN, 0)
    hi = np.minimum(np.array([b.stop for b in box]) + MASK_MARGIN, shape)
    return lo, hi


def soft_body_crop(vertebra: LabelledVertebra, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The body's probability map around its component (soft edges measure heights to
    sub-voxel precision), zero outside the component dilated by one voxel, cut to its
    bounding box plus a margin; returned with the crop's lower corner on the grid."""
    lo, hi = soft_crop_bounds(vertebra.box, probability.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    component = np.zeros(hi - lo, dtype=bool)
    inner = tuple(slice(b.start - a, b.stop - a) for b, a in zip(vertebra.box, lo))
    component[inner] = vertebra.local_mask
    region = ndimage.binary_dilation(component, iterations=1)
    soft = np.where(region, probability[sl], 0.0).astype(np.float32)
    return soft, lo


def shifted_affine(affine: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The affine of a crop whose first voxel is grid voxel ``lo``."""
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    return shifted


def body_probability_crop(
    vertebra: LabelledVertebra, probability: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`soft_body_crop` with the crop's own affine (index -> LPS mm)."""
    soft, lo = soft_body_crop(vertebra, probability)
    return soft, shifted_affine(affine, lo)
