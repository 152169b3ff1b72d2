"""Volumes that carry their geometry.

Array axis order is always (axis0, axis1, axis2) = (slice, row, column) for a volume as
loaded, and the ``affine`` maps array indices ``(a0, a1, a2, 1)`` to DICOM patient
coordinates ``(x, y, z, 1)`` in millimetres, LPS (x to the patient's Left, y Posterior,
z Superior). Every stage that changes the grid (reorient, resample, pad, crop) returns a
new affine, so a model voxel can always be mapped back to LPS millimetres.

The canonical orientation used for inference is LPS-aligned: axis0 runs to Superior,
axis1 to Posterior, axis2 to Left (``direction == identity`` after reversing to x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def affine_from_dicom(
    first_position: np.ndarray,
    row_cosine: np.ndarray,
    column_cosine: np.ndarray,
    slice_step: np.ndarray,
    pixel_spacing: tuple[float, float],
) -> np.ndarray:
    """The index -> LPS affine of a slice stack.

    ``first_position`` is ImagePositionPatient of slice 0; ``row_cosine`` and
    ``column_cosine`` are the two triplets of ImageOrientationPatient (the direction along
    a row, i.e. of increasing column index, and along a column); ``slice_step`` is the LPS
    vector from slice k to slice k+1; ``pixel_spacing`` is PixelSpacing (row spacing,
    column spacing) as DICOM orders it.
    """
    row_spacing, col_spacing = float(pixel_spacing[0]), float(pixel_spacing[1])
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(slice_step, dtype=float)            # axis0: slice
    affine[:3, 1] = np.asarray(column_cosine, dtype=float) * row_spacing  # axis1: row index
    affine[:3, 2] = np.asarray(row_cosine, dtype=float) * col_spacing     # axis2: column index
    affine[:3, 3] = np.asarray(first_position, dtype=float)
    return affine


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size in millimetres along each array axis."""
    return np.linalg.norm(affine[:3, :3], axis=0)


def index_to_lps(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Array index (..., 3) -> LPS millimetres (..., 3)."""
    index = np.asarray(index, dtype=float)
    return index @ affine[:3, :3].T + affine[:3, 3]


def lps_to_index(affine: np.ndarray, lps: np.ndarray) -> np.ndarray:
    """LPS millimetres (..., 3) -> fractional array index (..., 3)."""
    lps = np.asarray(lps, dtype=float)
    inverse = np.linalg.inv(affine)
    return lps @ inverse[:3, :3].T + inverse[:3, 3]


@dataclass
class Volume:
    """A CT volume in Hounsfield units with its geometry and identifiers.

    ``hu`` is int16 (the memory budget is one int16 volume per study); ``affine`` maps
    array indices to LPS millimetres (see the module docstring).
    """

    hu: np.ndarray
    affine: np.ndarray
    study_instance_uid: str
    series_instance_uid: str
    meta: dict[str, Any] = field(default_factory=dict)
    """Series attributes worth keeping (thickness, kernel, kVp, ...); never patient data."""

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"a Volume is 3-D; got shape {self.hu.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4; got {self.affine.shape}")

    @property
    def spacing(self) -> np.ndarray:
        return spacing_of(self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]
