"""Reorientation of an axis-aligned volume to the canonical orientation (plain math).

The canonical orientation is LPS-aligned with axis0 running to Superior, axis1 to
Posterior and axis2 to Left (see :mod:`engine.volume`). For the series a CT scanner
produces for screening (axial, image orientation [1,0,0,0,1,0] head first or
[-1,0,0,0,1,0] feet first, slices stored ascending or descending) reaching it is a
permutation of the array axes plus flips; no interpolation is involved, so the voxel
values are untouched and only the affine changes.

Only the *description* of the reorientation is computed here. Who applies it is decided by
the pipeline: flips cost nothing inside DALI's resize (a reversed region of interest) while
a flipped numpy view would have to be copied before DALI accepts it; see
``engine.preprocess.plan``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import CorruptStudyError, UnsupportedStudyError

# The LPS component (x=0, y=1, z=2) each canonical axis runs along, in its positive sense.
CANONICAL_LPS_COMPONENT = (2, 1, 0)
_LPS_NAMES = ("x (Left)", "y (Posterior)", "z (Superior)")


@dataclass(frozen=True)
class Reorientation:
    """How a stored array becomes the canonical one.

    ``permutation[k]`` is the stored axis that becomes canonical axis ``k`` (the argument
    of ``np.transpose``); ``flips[k]`` tells whether canonical axis ``k`` runs opposite to
    that stored axis. ``affine`` maps canonical indices to LPS millimetres and ``shape`` is
    the canonical shape.
    """

    permutation: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    affine: np.ndarray
    shape: tuple[int, int, int]

    @property
    def is_identity(self) -> bool:
        return self.permutation == (0, 1, 2) and not any(self.flips)

    def canonical_to_stored(self) -> np.ndarray:
        """4x4 matrix mapping a canonical index to the stored array's index."""
        matrix = np.zeros((4, 4))
        matrix[3, 3] = 1.0
        for canonical_axis, stored_axis in enumerate(self.permutation):
            if self.flips[canonical_axis]:
                matrix[stored_axis, canonical_axis] = -1.0
                matrix[stored_axis, 3] = self.shape[canonical_axis] - 1
            else:
                matrix[stored_axis, canonical_axis] = 1.0
        return matrix


def axis_obliquity_deg(affine: np.ndarray) -> np.ndarray:
    """Angle in degrees between each array axis and the nearest LPS axis.

    Raises CorruptStudyError when an axis has no length (a degenerate geometry, for
    example two slices at the same position).
    """
    columns = np.asarray(affine, dtype=float)[:3, :3]
    lengths = np.linalg.norm(columns, axis=0)
    if np.any(lengths <= 1e-6) or not np.all(np.isfinite(columns)):
        raise CorruptStudyError(
            f"the voxel geometry is degenerate: axis lengths {np.round(lengths, 4).tolist()} mm"
        )
    cosines = np.abs(columns / lengths).max(axis=0)
    return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def reorientation(
    affine: np.ndarray, shape: tuple[int, int, int], tolerance_deg: float = 1.0
) -> Reorientation:
    """The permutation and flips bringing a stored array to the canonical orientation.

    ``affine`` maps the stored array's indices to LPS millimetres and ``shape`` is the
    stored shape. The new affine keeps the exact direction cosines (a tilt below the
    tolerance is carried in the affine, not rounded away), so a canonical voxel maps back
    to the same LPS point as the stored voxel it came from.

    Raises UnsupportedStudyError for an oblique or gantry-tilted series (an axis more than
    ``tolerance_deg`` from every patient axis): resampling those needs a full 3-D affine
    warp, which this version does not do.
    """
    affine = np.asarray(affine, dtype=float)
    angles = axis_obliquity_deg(affine)
    worst = int(np.argmax(angles))
    if angles[worst] > tolerance_deg:
        raise UnsupportedStudyError(
            f"the series is oblique: array axis {worst} is {angles[worst]:.1f} degrees from "
            f"the nearest patient axis (limit {tolerance_deg:g} degrees); only axis-aligned "
            "acquisitions without gantry tilt are supported"
        )
    columns = affine[:3, :3]
    dominant = np.abs(columns).argmax(axis=0)  # LPS component of each stored axis
    if len(set(dominant.tolist())) != 3:
        raise CorruptStudyError(
            "two array axes run along the same patient axis "
            f"({[_LPS_NAMES[c] for c in dominant]}): the geometry is inconsistent"
        )
    permutation = tuple(int(np.flatnonzero(dominant == c)[0]) for c in CANONICAL_LPS_COMPONENT)
    flips = tuple(
        bool(columns[component, stored] < 0)
        for component, stored in zip(CANONICAL_LPS_COMPONENT, permutation, strict=True)
    )
    first, second, third = permutation
    arrangement: tuple[int, int, int] = (first, second, third)
    canonical_shape = (int(shape[first]), int(shape[second]), int(shape[third]))
    flip_flags = (flips[0], flips[1], flips[2])
    described = Reorientation(arrangement, flip_flags, np.eye(4), canonical_shape)
    new_affine = affine @ described.canonical_to_stored()
    return Reorientation(arrangement, flip_flags, new_affine, canonical_shape)
