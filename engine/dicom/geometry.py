"""Slice-stack geometry: plain functions on positions and orientations, no pydicom.

A CT series is a stack of planes, each with ImagePositionPatient (the LPS centre of its
first pixel) and ImageOrientationPatient (row and column direction cosines). The planes
are ordered by their distance along the slice normal ``n = row x column`` (``d = p . n``),
never by InstanceNumber, which scanners number in acquisition order, in either direction,
or not at all. The slice step vector, the LPS difference between consecutive planes
averaged over the stack, becomes axis 0 of the affine; when the gantry was tilted it is not
parallel to ``n``, and the angle between the two is the tilt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

AXIS_NAMES = ("sagittal", "coronal", "axial")  # slice normal mostly along x, y, z
"""Plane names by the LPS axis the slice normal is closest to."""


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of a plane from its six ImageOrientationPatient values (row x column)."""
    row = np.asarray(orientation[:3], dtype=float)
    column = np.asarray(orientation[3:6], dtype=float)
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if length == 0.0:
        raise ValueError(f"orientation {tuple(orientation)} has parallel row and column vectors")
    return normal / length


def orientation_defect(orientation: Sequence[float], tolerance: float = 0.01) -> str | None:
    """Why six direction cosines are not two perpendicular unit vectors, or None if they are."""
    row = np.asarray(orientation[:3], dtype=float)
    column = np.asarray(orientation[3:6], dtype=float)
    row_length, column_length = float(np.linalg.norm(row)), float(np.linalg.norm(column))
    if abs(row_length - 1.0) > tolerance or abs(column_length - 1.0) > tolerance:
        return f"direction vectors of length {row_length:.3f} and {column_length:.3f} instead of 1"
    cosine = float(np.dot(row, column))
    if abs(cosine) > tolerance:
        angle = math.degrees(math.acos(max(-1.0, min(1.0, cosine))))
        return f"row and column directions {angle:.1f} degrees apart instead of 90"
    return None


def angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Angle between two vectors in degrees (0..180)."""
    cosine = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def obliquity_deg(normal: np.ndarray) -> float:
    """Angle between a slice normal and the patient's head-foot (z) axis, sign ignored (0..90)."""
    return min(
        angle_deg(normal, np.array([0.0, 0.0, 1.0])), angle_deg(normal, np.array([0.0, 0.0, -1.0]))
    )


def plane_name(normal: np.ndarray, max_obliquity_deg: float) -> str:
    """``axial``, ``coronal`` or ``sagittal`` by the dominant axis, ``oblique`` past the limit."""
    axis = int(np.argmax(np.abs(normal)))
    unit = np.zeros(3)
    unit[axis] = 1.0
    off_axis = min(angle_deg(normal, unit), angle_deg(normal, -unit))
    return AXIS_NAMES[axis] if off_axis <= max_obliquity_deg else "oblique"


def same_orientation(a: Sequence[float], b: Sequence[float], tolerance_deg: float = 0.5) -> bool:
    """True when two ImageOrientationPatient values describe the same plane directions."""
    row_a, col_a = np.asarray(a[:3], float), np.asarray(a[3:6], float)
    row_b, col_b = np.asarray(b[:3], float), np.asarray(b[3:6], float)
    return angle_deg(row_a, row_b) <= tolerance_deg and angle_deg(col_a, col_b) <= tolerance_deg


def distances_along(normal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Signed distance of each position (N, 3) along the normal, in millimetres."""
    return np.asarray(positions, dtype=float) @ np.asarray(normal, dtype=float)


def group_coincident(sorted_distances: np.ndarray, tolerance_mm: float) -> list[list[int]]:
    """Runs of consecutive indices (into the sorted distances) that lie on the same plane."""
    groups: list[list[int]] = []
    for index, distance in enumerate(sorted_distances):
        if groups and distance - sorted_distances[groups[-1][0]] <= tolerance_mm:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def missing_between(step_mm: float, median_mm: float) -> int:
    """How many slices a step of ``step_mm`` skips on a grid of ``median_mm``."""
    return max(0, round(step_mm / median_mm) - 1)


def mean_step(first: np.ndarray, last: np.ndarray, n_slices: int) -> np.ndarray:
    """The mean LPS vector between consecutive slices of an ``n_slices`` regular grid.

    The mean of the consecutive differences telescopes to ``(last - first) / (n - 1)``.
    """
    if n_slices < 2:
        raise ValueError(f"a slice step needs at least two slices, got {n_slices}")
    return (np.asarray(last, float) - np.asarray(first, float)) / (n_slices - 1)


def tilt_deg(step: np.ndarray, normal: np.ndarray) -> float:
    """Gantry tilt: angle between the slice step and the slice normal, direction ignored."""
    angle = angle_deg(step, normal)
    return min(angle, 180.0 - angle)
