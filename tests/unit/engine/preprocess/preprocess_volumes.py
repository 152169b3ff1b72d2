"""Small synthetic volumes for the preprocessing tests, built from LPS-space functions.

Every stored variant (head first, feet first, slices ascending or descending, sagittal) is
made by evaluating the same physical object at that variant's own voxel positions, computed
with ``engine.volume.affine_from_dicom`` from explicit DICOM-style geometry. No variant is
derived from the code under test.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from engine.volume import Volume, affine_from_dicom, index_to_lps

LpsField = Callable[[np.ndarray], np.ndarray]

BALL_CENTRE_LPS = np.array([8.3, -6.9, 10.6])
"""A point inside every test field of view (and inside a centred 32 mm crop), off-centre."""


def ball_field(centre: np.ndarray = BALL_CENTRE_LPS, sigma_mm: float = 3.0) -> LpsField:
    """Air (-1000 HU), soft tissue (40 HU) in a box and a dense Gaussian blob peaking at
    1040 HU at ``centre``: inside the HU window, so its peak and centroid are well defined."""

    def field(lps: np.ndarray) -> np.ndarray:
        hu = np.full(lps.shape[:-1], -1000.0)
        inside_box = np.all(np.abs(lps) < np.array([30.0, 30.0, 60.0]), axis=-1)
        hu[inside_box] = 40.0
        squared = np.sum((lps - centre) ** 2, axis=-1)
        return hu + 1000.0 * np.exp(-squared / (2 * sigma_mm**2))

    return field


def smooth_field(lps: np.ndarray) -> np.ndarray:
    """A smooth pattern spanning more than the HU window, so clipping is exercised."""
    x, y, z = lps[..., 0], lps[..., 1], lps[..., 2]
    return 900.0 * np.sin(x / 9.0) * np.cos(y / 13.0) + 600.0 * np.sin(z / 17.0) + 300.0


def make_volume(
    shape: tuple[int, int, int],
    field: LpsField,
    *,
    row_cosine=(1.0, 0.0, 0.0),
    column_cosine=(0.0, 1.0, 0.0),
    slice_step=(0.0, 0.0, 1.25),
    pixel_spacing=(0.7, 0.7),
    first_position=None,
    noise_hu: float = 0.0,
    uid: str = "1.2.826.0.1.3680043.10.1.1",
) -> Volume:
    """A Volume whose voxel (k, r, c) holds ``field`` at that voxel's LPS position.

    ``first_position`` defaults to the value that centres the field of view on LPS origin,
    so differently stored variants of the same shape cover the same points.
    """
    row_cosine = np.asarray(row_cosine, float)
    column_cosine = np.asarray(column_cosine, float)
    slice_step = np.asarray(slice_step, float)
    if first_position is None:
        half = (np.asarray(shape, float) - 1) / 2
        first_position = -(
            half[0] * slice_step
            + half[1] * pixel_spacing[0] * column_cosine
            + half[2] * pixel_spacing[1] * row_cosine
        )
    affine = affine_from_dicom(
        np.asarray(first_position, float), row_cosine, column_cosine, slice_step, pixel_spacing
    )
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    hu = field(index_to_lps(affine, index))
    if noise_hu:
        hu = hu + np.random.default_rng(7).normal(0.0, noise_hu, size=hu.shape)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return Volume(hu=hu, affine=affine, study_instance_uid=uid, series_instance_uid=uid + ".1")
