"""Metal or cement inside a body, read from the original HU volume through two different grids."""

from __future__ import annotations

import numpy as np
import pytest
from postprocess_bodies import grid_affine

from engine.postprocess.metal import dense_volume_mm3
from engine.volume import index_to_lps

THRESHOLD = 2500.0
HALF = np.array([20.0, 15.0, 12.0])
"""The body: a box of 40 x 30 x 24 mm (L-R, A-P, S-I) centred on the LPS origin."""
SCREW_RADIUS = 3.0


def raster(affine: np.ndarray, shape: tuple[int, int, int], value) -> np.ndarray:
    """``value(lps)`` at every voxel centre of a grid."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return value(index_to_lps(affine, index))


def in_body(lps: np.ndarray) -> np.ndarray:
    return np.all(np.abs(lps) <= HALF, axis=-1)


def screw(y_from: float, y_to: float):
    """A pedicle screw along A-P (LPS y), 10 mm left of the midline, at mid-height."""
    def inside(lps: np.ndarray) -> np.ndarray:
        radial = np.hypot(lps[..., 0] - 10.0, lps[..., 2])
        return (radial <= SCREW_RADIUS) & (lps[..., 1] >= y_from) & (lps[..., 1] <= y_to)
    return inside


def body_mask(soft: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The body on the 2 mm model grid (canonical order), bool or as probabilities."""
    affine = grid_affine((2.0, 2.0, 2.0), np.array([-27.0, -23.0, -27.0]))
    inside = raster(affine, (28, 24, 28), in_body)
    return (np.where(inside, 0.9, 0.1) if soft else inside), affine


def scan(*parts, origin_shift: float = 0.0, bone_hu: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """The original scan: 0.8 x 0.8 mm in plane, 2.5 mm slices, stored in an unusual axis order
    (Left, Inferior, Anterior), with the body at ``bone_hu`` and each part painted at 3071 HU."""
    affine = grid_affine((0.8, 2.5, 0.8), np.array([-40.0 + origin_shift, 30.0, 40.0]), flip=True)

    def value(lps: np.ndarray) -> np.ndarray:
        hu = np.where(in_body(lps), bone_hu, 40.0)
        for part in parts:
            hu = np.where(part(lps), 3071.0, hu)
        return hu.astype(np.int16)
    return raster(affine, (100, 24, 100), value), affine


@pytest.mark.parametrize("soft", [False, True], ids=["bool-mask", "soft-mask"])
def test_the_part_of_a_screw_inside_the_body_is_measured(soft):
    hu, hu_affine = scan(screw(-5.0, 40.0))
    mask, affine = body_mask(soft)
    # 20 mm of the screw lie in the body (y from -5 to the posterior wall at 15): the scan's
    # voxels of it, counted where their centres fall in the true body
    in_scan = raster(hu_affine, hu.shape, lambda lps: screw(-5.0, 40.0)(lps) & in_body(lps))
    expected = in_scan.sum() * 0.8 * 0.8 * 2.5
    assert expected == pytest.approx(np.pi * SCREW_RADIUS**2 * 20.0, rel=0.2)
    # the 2 mm mask's outline is good to a millimetre: 1 of the 20 mm
    assert dense_volume_mm3(hu, hu_affine, mask, affine, THRESHOLD) == pytest.approx(expected, rel=0.08)


def test_metal_beside_the_body_or_bone_below_the_threshold_is_not_counted():
    mask, affine = body_mask()
    behind, hu_affine = scan(screw(19.0, 40.0))
    assert behind.max() == 3071  # the screw is in the scan, 4 mm behind the body
    assert dense_volume_mm3(behind, hu_affine, mask, affine, THRESHOLD) == 0.0
    dense_bone, hu_affine = scan(bone_hu=1900.0)
    assert dense_volume_mm3(dense_bone, hu_affine, mask, affine, THRESHOLD) == 0.0


def test_a_body_outside_the_scan_or_an_empty_mask_holds_nothing():
    mask, affine = body_mask()
    far, hu_affine = scan(screw(-5.0, 40.0), origin_shift=500.0)
    assert dense_volume_mm3(far, hu_affine, mask, affine, THRESHOLD) == 0.0
    hu, hu_affine = scan(screw(-5.0, 40.0))
    assert dense_volume_mm3(hu, hu_affine, np.zeros_like(mask), affine, THRESHOLD) == 0.0
