"""From the planes of one series to a regular slice grid, or a typed reason why not.

:func:`plan_stack` reads headers only. It orders the planes along the slice normal, sets
aside repeated instances, marks planes that share a position (their pixels are compared
when decoded), finds missing slices, uneven spacing and gantry tilt, and returns a
:class:`StackPlan` that assembly follows. Each refusal is a typed error whose message gives
the numbers: a radiology IT person should be able to check it against the scanner console.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.dicom.geometry import (
    distances_along,
    group_coincident,
    mean_step,
    missing_between,
    orientation_defect,
    same_orientation,
    slice_normal,
    tilt_deg,
)
from engine.dicom.headers import InstanceHeader
from engine.dicom.values import FrameHeader
from engine.errors import CorruptStudyError, NotEligibleError, UnsupportedStudyError
from engine.settings import SelectionSettings

COINCIDENT_MM = 0.01
"""Planes closer than this along the normal are at the same position."""
PIXEL_SPACING_TOLERANCE_MM = 1e-3
"""Pixel spacings that differ by more than this are different grids."""
TILT_WARNING_DEG = 0.01
"""A tilt below this is rounding in the positions and is not worth a warning."""
_LISTED = 3
"""At most this many file names are quoted in one message."""


@dataclass(frozen=True)
class Plane:
    """One image plane of a series: an instance, and a frame of it when multi-frame."""

    header: InstanceHeader
    frame: FrameHeader

    @property
    def name(self) -> str:
        if self.frame.frame_index is None:
            return self.header.name
        return f"{self.header.name} frame {self.frame.frame_index + 1}"


@dataclass
class StackPlan:
    """How to build a regular volume from the planes of a series.

    ``slots[k]`` is the index (into ``planes``) of the plane decoded into slice ``k``, or
    None for a missing slice to interpolate from its neighbours. ``coincident`` lists, for
    a kept plane index, the other planes found at the same position with a different
    SOPInstanceUID: assembly decodes them and refuses the series if their pixels differ.
    Slices run along ``normal``; ``step`` is the LPS vector from slice k to k+1.
    """

    planes: list[Plane]
    slots: list[int | None]
    coincident: dict[int, list[int]]
    normal: np.ndarray
    step: np.ndarray
    spacing_mm: float
    tilt_deg: float
    coverage_mm: float
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]
    repeated_instances: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def n_slices(self) -> int:
        return len(self.slots)

    @property
    def first_position(self) -> np.ndarray:
        return np.asarray(self.planes[self.slots[0]].frame.position, dtype=float)  # type: ignore[index,arg-type]

    @property
    def orientation(self) -> tuple[float, ...]:
        return self.planes[self.slots[0]].frame.orientation  # type: ignore[index,return-value]


def _names(planes: list[Plane]) -> str:
    shown = ", ".join(plane.name for plane in planes[:_LISTED])
    more = len(planes) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _check_required(planes: list[Plane]) -> None:
    """Every plane needs a position, an orientation, a pixel spacing and a size."""
    for attribute in ("position", "orientation", "pixel_spacing"):
        lacking = [plane for plane in planes if getattr(plane.frame, attribute) is None]
        if lacking:
            keyword = {
                "position": "ImagePositionPatient",
                "orientation": "ImageOrientationPatient",
                "pixel_spacing": "PixelSpacing",
            }[attribute]
            problems = "; ".join(lacking[0].header.problems[:2])
            detail = f" ({problems})" if problems else ""
            raise CorruptStudyError(
                f"{keyword} is missing or malformed in {len(lacking)} of {len(planes)} images: "
                f"{_names(lacking)}{detail}"
            )
    sizes: dict[tuple[int | None, int | None], list[Plane]] = {}
    for plane in planes:
        sizes.setdefault((plane.header.rows, plane.header.columns), []).append(plane)
    lacking = [p for size, group in sizes.items() if None in size for p in group]
    if lacking:
        raise CorruptStudyError(f"Rows or Columns is missing in {_names(lacking)}")
    if len(sizes) > 1:
        described = ", ".join(f"{r}x{c} ({len(group)} images)" for (r, c), group in sizes.items())
        raise CorruptStudyError(f"images of different sizes in one series: {described}")


def _mm_pair(values) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def _check_in_plane(planes: list[Plane]) -> tuple[float, float]:
    """One pixel spacing and one orientation for the whole series."""
    reference = planes[0].frame
    spacing = np.asarray(reference.pixel_spacing, dtype=float)
    if np.any(spacing <= 0):
        raise CorruptStudyError(
            f"PixelSpacing {_mm_pair(spacing)} in {planes[0].name} is not positive"
        )
    odd = [
        p
        for p in planes
        if np.max(np.abs(np.asarray(p.frame.pixel_spacing, dtype=float) - spacing))
        > PIXEL_SPACING_TOLERANCE_MM
    ]
    if odd:
        raise CorruptStudyError(
            f"pixel spacing differs within the series: {_mm_pair(spacing)} mm "
            f"and {_mm_pair(odd[0].frame.pixel_spacing)} mm ({_names(odd)})"
        )
    defect = orientation_defect(reference.orientation)  # type: ignore[arg-type]
    if defect:
        raise CorruptStudyError(f"ImageOrientationPatient of {planes[0].name} is invalid: {defect}")
    mixed = [p for p in planes if not same_orientation(p.frame.orientation, reference.orientation)]  # type: ignore[arg-type]
    if mixed:
        raise NotEligibleError(
            f"the series mixes image orientations ({len(planes) - len(mixed)} images in one, "
            f"{len(mixed)} in others, e.g. {_names(mixed)}): it is not a single stack of slices"
        )
    return float(spacing[0]), float(spacing[1])


def _resolve_coincident(
    planes: list[Plane], order: np.ndarray, distances: np.ndarray
) -> tuple[list[int], dict[int, list[int]], int]:
    """One kept plane per position; repeated instances dropped, distinct ones recorded."""
    kept: list[int] = []
    coincident: dict[int, list[int]] = {}
    repeated = 0
    for group in group_coincident(distances[order], COINCIDENT_MM):
        members = [int(order[i]) for i in group]
        first = members[0]
        kept.append(first)
        seen = {planes[first].header.sop_instance_uid}
        for other in members[1:]:
            uid = planes[other].header.sop_instance_uid
            if (
                uid is not None
                and uid in seen
                and planes[other].frame.frame_index == planes[first].frame.frame_index
            ):
                repeated += 1  # the same instance received twice
                continue
            seen.add(uid)
            coincident.setdefault(first, []).append(other)
    return kept, coincident, repeated


def _spacing_slots(
    kept: list[int], kept_distances: np.ndarray, settings: SelectionSettings
) -> tuple[list[int | None], float, list[str]]:
    """Slots with placeholders for filled gaps; refuses gaps and uneven spacing."""
    steps = np.diff(kept_distances)
    median = float(np.median(steps))
    slots: list[int | None] = [kept[0]]
    warnings: list[str] = []
    uneven: list[float] = []
    for index, step in enumerate(steps):
        step = float(step)
        if step > settings.max_gap_factor * median:
            missing = missing_between(step, median)
            below, above = kept_distances[index], kept_distances[index + 1]
            where = f"between slice positions {below:.2f} and {above:.2f} mm"
            regular = abs(step - (missing + 1) * median) <= max(
                settings.spacing_tolerance_mm, 0.02 * step
            )
            if missing > settings.fill_missing_slices or not regular:
                raise CorruptStudyError(
                    f"about {missing} image(s) missing {where} (a step of {step:.2f} mm where the "
                    f"series steps {median:.2f} mm): the series is incomplete"
                    + (
                        f"; at most {settings.fill_missing_slices} are filled in"
                        if settings.fill_missing_slices
                        else ""
                    )
                )
            slots.extend([None] * missing)
            warnings.append(
                f"{missing} missing image(s) {where} were interpolated from their neighbours"
            )
        elif abs(step - median) > settings.spacing_tolerance_mm:
            uneven.append(step)
        slots.append(kept[index + 1])
    if uneven:
        raise UnsupportedStudyError(
            f"uneven slice spacing: {len(uneven)} step(s) from {min(uneven):.2f} to {max(uneven):.2f} mm "
            f"around a median of {median:.2f} mm (tolerance {settings.spacing_tolerance_mm} mm)"
        )
    return slots, median, warnings


def plan_stack(planes: list[Plane], settings: SelectionSettings) -> StackPlan:
    """Check the planes of one series and say how to assemble them; headers only.

    Raises :class:`CorruptStudyError` (missing geometry, mixed sizes or spacings, missing
    slices), :class:`UnsupportedStudyError` (gantry tilt, uneven spacing) or
    :class:`NotEligibleError` (mixed orientations, fewer than two positions).
    """
    if not planes:
        raise NotEligibleError("the series holds no images")
    _check_required(planes)
    pixel_spacing = _check_in_plane(planes)
    normal = slice_normal(planes[0].frame.orientation)  # type: ignore[arg-type]
    positions = np.array([plane.frame.position for plane in planes], dtype=float)
    distances = distances_along(normal, positions)
    order = np.argsort(distances, kind="stable")
    kept, coincident, repeated = _resolve_coincident(planes, order, distances)
    if len(kept) < 2:
        raise NotEligibleError(
            f"all {len(planes)} images lie at one position: not a stack of slices"
        )
    kept_distances = distances[kept]
    slots, median, warnings = _spacing_slots(kept, kept_distances, settings)
    step = mean_step(positions[kept[0]], positions[kept[-1]], len(slots))
    tilt = tilt_deg(step, normal)
    if tilt > settings.max_gantry_tilt_deg:
        shift = float(np.linalg.norm(step) * np.sin(np.radians(tilt)))
        raise UnsupportedStudyError(
            f"gantry tilt of {tilt:.2f} degrees (each slice is shifted {shift:.2f} mm "
            f"sideways from the previous one); tilted acquisitions are not supported "
            f"beyond {settings.max_gantry_tilt_deg} degrees"
        )
    if tilt > TILT_WARNING_DEG:
        warnings.append(f"gantry tilt of {tilt:.2f} degrees kept in the affine (a sheared grid)")
    if repeated:
        warnings.append(f"{repeated} repeated instance(s) (same SOP Instance UID) were ignored")
    return StackPlan(
        planes=planes,
        slots=slots,
        coincident=coincident,
        normal=normal,
        step=step,
        spacing_mm=median,
        tilt_deg=tilt,
        coverage_mm=float(kept_distances[-1] - kept_distances[0]),
        rows=int(planes[0].header.rows),  # type: ignore[arg-type]
        columns=int(planes[0].header.columns),  # type: ignore[arg-type]
        pixel_spacing=pixel_spacing,
        repeated_instances=repeated,
        warnings=warnings,
    )
