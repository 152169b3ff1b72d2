"""The series of a phantom study: the screening axial series and the ones selection must skip.

A real study carries more than the series worth screening: the scout (localizer)
projections, a thick axial reconstruction for reading, a sagittal reformat. Each is built
here from the rendered volume, with the attributes that make it ineligible and the reason
recorded for truth.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.uid import generate_uid

from engine.volume import Volume

UID_ROOT = "1.2.826.0.1.3680043.8.498."
"""pydicom's UID root; every phantom UID is a deterministic hash under it."""


def phantom_uid(seed: int, *parts: object) -> str:
    """A UID derived only from the seed and a role (same seed, same UID)."""
    return generate_uid(prefix=UID_ROOT, entropy_srcs=["vcfscreen-phantom", str(seed), *map(str, parts)])


@dataclass
class SeriesData:
    """One series as stacks of 2-D images in HU with their geometry."""

    role: str  # "screening", "localizer", "thick_axial" or "sagittal_reformat"
    series_number: int
    series_instance_uid: str
    description: str
    image_type: tuple[str, ...]
    orientation: tuple[float, ...]  # ImageOrientationPatient (row cosine, column cosine)
    positions: np.ndarray  # (n, 3) ImagePositionPatient of each image
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing)
    thickness: float
    spacing_between: float | None
    images: np.ndarray  # (n, rows, columns) int16 HU
    eligible: bool
    reason: str
    per_image_orientation: list[tuple[float, ...]] | None = None

    def orientation_of(self, index: int) -> tuple[float, ...]:
        if self.per_image_orientation is not None:
            return self.per_image_orientation[index]
        return self.orientation

    def record(self) -> dict:
        return {"series_instance_uid": self.series_instance_uid, "series_number": self.series_number,
                "role": self.role, "description": self.description, "images": len(self.images),
                "eligible": self.eligible, "reason": self.reason}


def _axial_geometry(affine: np.ndarray) -> tuple[tuple[float, ...], np.ndarray, float]:
    row_cosine = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    column_cosine = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    orientation = tuple(float(round(c, 6)) for c in (*row_cosine, *column_cosine))
    return orientation, affine[:3, 0], float(np.linalg.norm(affine[:3, 2]))


def screening_series(volume: Volume, seed: int, number: int, thickness: float, spacing: float) -> SeriesData:
    orientation, step, pixel = _axial_geometry(volume.affine)
    positions = volume.affine[:3, 3] + np.arange(volume.shape[0])[:, None] * step
    return SeriesData(
        role="screening", series_number=number, series_instance_uid=volume.series_instance_uid,
        description=f"AXIAL {thickness:g}MM ABD PELVIS CHEST", image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        orientation=orientation, positions=positions, pixel_spacing=(pixel, pixel), thickness=thickness,
        spacing_between=spacing, images=volume.hu, eligible=True,
        reason="thin axial original reconstruction covering the trunk",
    )


def thick_series(volume: Volume, seed: int, number: int, spacing: float) -> SeriesData:
    """Averages of consecutive slices to ~5 mm: a reading series, too thick to screen."""
    group = max(round(5.0 / spacing), 2)
    count = volume.shape[0] // group
    stack = volume.hu[: count * group].reshape(count, group, *volume.shape[1:])
    images = np.rint(stack.mean(axis=1, dtype=np.float32)).astype(np.int16)
    orientation, step, pixel = _axial_geometry(volume.affine)
    first = volume.affine[:3, 3] + step * (group - 1) / 2.0
    positions = first + np.arange(count)[:, None] * step * group
    thickness = round(group * spacing, 3)
    return SeriesData(
        role="thick_axial", series_number=number, series_instance_uid=phantom_uid(seed, "series", "thick"),
        description=f"AXIAL {thickness:g}MM", image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        orientation=orientation, positions=positions, pixel_spacing=(pixel, pixel), thickness=thickness,
        spacing_between=thickness, images=images, eligible=False,
        reason=f"slices {thickness:g} mm thick, above the 3 mm screening limit",
    )


def _superior_first(volume: Volume) -> np.ndarray:
    """The HU volume with axis 0 running from head to feet."""
    return volume.hu if volume.affine[2, 0] < 0 else volume.hu[::-1]


def sagittal_series(volume: Volume, seed: int, number: int, spine_x: float) -> SeriesData:
    """Sagittal planes through the spine (DERIVED reformat), 3 mm apart."""
    hu = _superior_first(volume)
    z_top = float(max(volume.affine[2, 3], volume.affine[2, 3] + volume.affine[2, 0] * (volume.shape[0] - 1)))
    dx = volume.affine[0, 2]
    xs = volume.affine[0, 3] + dx * np.arange(volume.shape[2])
    planes = np.arange(spine_x - 36.0, spine_x + 36.1, 3.0)
    columns = [int(np.argmin(np.abs(xs - x))) for x in planes]
    images = np.ascontiguousarray(np.stack([hu[:, :, c] for c in columns]))
    y0, dy = volume.affine[1, 3], volume.affine[1, 1]
    positions = np.array([[xs[c], y0, z_top] for c in columns])
    dz = abs(volume.affine[2, 0])
    return SeriesData(
        role="sagittal_reformat", series_number=number, series_instance_uid=phantom_uid(seed, "series", "sagittal"),
        description="SAG SPINE REFORMAT", image_type=("DERIVED", "SECONDARY", "REFORMATTED"),
        orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), positions=positions, pixel_spacing=(float(dz), float(dy)),
        thickness=3.0, spacing_between=3.0, images=images, eligible=False,
        reason="derived sagittal reformat, not an original axial reconstruction",
    )


def localizer_series(volume: Volume, seed: int, number: int, lateral: bool) -> SeriesData:
    """Scout projections (AP, and lateral when asked) computed as attenuation line integrals."""
    hu = _superior_first(volume)
    z_top = float(max(volume.affine[2, 3], volume.affine[2, 3] + volume.affine[2, 0] * (volume.shape[0] - 1)))
    dx, dy, dz = volume.affine[0, 2], volume.affine[1, 1], abs(volume.affine[2, 0])
    ap_sum = np.empty((hu.shape[0], hu.shape[2]), dtype=np.int64)
    lat_sum = np.empty((hu.shape[0], hu.shape[1]), dtype=np.int64)
    for start in range(0, hu.shape[0], 64):  # attenuation relative to water, slab by slab
        mu = np.maximum(hu[start : start + 64].astype(np.int32) + 1000, 0)
        ap_sum[start : start + 64] = mu.sum(axis=1)
        lat_sum[start : start + 64] = mu.sum(axis=2)
    ap = ap_sum / 1000.0 * abs(dy)  # (z, x): integral along y
    if dx < 0:  # columns of the projection run to the patient's left
        ap = ap[:, ::-1]
    x0 = min(volume.affine[0, 3], volume.affine[0, 3] + dx * (volume.shape[2] - 1))
    y_mid = volume.affine[1, 3] + dy * (volume.shape[1] - 1) / 2.0
    images = [ap]
    positions = [[x0, y_mid, z_top]]
    orientations = [(1.0, 0.0, 0.0, 0.0, 0.0, -1.0)]
    if lateral:
        lat = lat_sum / 1000.0 * abs(dx)  # (z, y): integral along x
        images.append(lat)
        positions.append([volume.affine[0, 3] + dx * (volume.shape[2] - 1) / 2.0, volume.affine[1, 3], z_top])
        orientations.append((0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    scaled = [np.clip(np.rint(img * 6.0 - 1024.0), -1024, 3071).astype(np.int16) for img in images]
    rows = max(s.shape[0] for s in scaled)
    cols = max(s.shape[1] for s in scaled)
    stack = np.full((len(scaled), rows, cols), -1024, dtype=np.int16)
    for i, s in enumerate(scaled):
        stack[i, : s.shape[0], : s.shape[1]] = s
    return SeriesData(
        role="localizer", series_number=number, series_instance_uid=phantom_uid(seed, "series", "localizer"),
        description="TOPOGRAM", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        orientation=orientations[0], positions=np.array(positions), pixel_spacing=(float(dz), float(abs(dx))),
        thickness=1.0, spacing_between=None, images=stack, eligible=False,
        reason="localizer (scout) projection images", per_image_orientation=orientations,
    )
