"""Reorientation to axis0 Superior, axis1 Posterior, axis2 Left, from the affine alone."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import CorruptStudyError, UnsupportedStudyError
from engine.preprocess.orientation import axis_obliquity_deg, reorientation
from engine.volume import affine_from_dicom, index_to_lps

SHAPE = (5, 6, 7)

# name: (row cosine, column cosine, slice step) -> (permutation, flips)
CASES = {
    "HFS ascending": (((1, 0, 0), (0, 1, 0), (0, 0, 1.5)), ((0, 1, 2), (False, False, False))),
    "HFS descending": (((1, 0, 0), (0, 1, 0), (0, 0, -1.5)), ((0, 1, 2), (True, False, False))),
    "FFS ascending": (((-1, 0, 0), (0, 1, 0), (0, 0, 1.5)), ((0, 1, 2), (False, False, True))),
    "FFS descending": (((-1, 0, 0), (0, 1, 0), (0, 0, -1.5)), ((0, 1, 2), (True, False, True))),
    "prone": (((-1, 0, 0), (0, -1, 0), (0, 0, 1.5)), ((0, 1, 2), (False, True, True))),
    "sagittal": (((0, 1, 0), (0, 0, -1), (1.5, 0, 0)), ((1, 2, 0), (True, False, False))),
    "coronal": (((1, 0, 0), (0, 0, -1), (0, 1.5, 0)), ((1, 0, 2), (True, False, False))),
}


def _affine(row, column, step, spacing=(0.8, 0.6)):
    return affine_from_dicom(
        np.array([10.0, -20.0, 30.0]), np.array(row, float), np.array(column, float),
        np.array(step, float), spacing,
    )


def _rotation_z(degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


@pytest.mark.parametrize("name", list(CASES))
def test_permutation_and_flips_of_common_acquisitions(name):
    (row, column, step), (permutation, flips) = CASES[name]
    result = reorientation(_affine(row, column, step), SHAPE)
    assert result.permutation == permutation
    assert result.flips == flips
    assert result.shape == tuple(SHAPE[axis] for axis in permutation)


@pytest.mark.parametrize("name", list(CASES))
def test_canonical_axes_run_superior_posterior_left(name):
    (row, column, step), _ = CASES[name]
    columns = reorientation(_affine(row, column, step), SHAPE).affine[:3, :3]
    # axis0 along +z (Superior), axis1 along +y (Posterior), axis2 along +x (Left).
    for canonical_axis, lps_component in enumerate((2, 1, 0)):
        direction = columns[:, canonical_axis] / np.linalg.norm(columns[:, canonical_axis])
        assert direction[lps_component] == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(CASES))
def test_reoriented_array_keeps_every_voxel_at_its_lps_position(name):
    """Applying the permutation and flips with numpy moves values and positions together."""
    (row, column, step), _ = CASES[name]
    stored_affine = _affine(row, column, step)
    stored = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    result = reorientation(stored_affine, SHAPE)
    canonical = np.transpose(stored, result.permutation)
    for axis, flip in enumerate(result.flips):
        if flip:
            canonical = np.flip(canonical, axis)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in canonical.shape], indexing="ij"), -1)
    canonical_lps = index_to_lps(result.affine, grid.reshape(-1, 3))
    stored_index = np.stack(np.unravel_index(canonical.ravel(), SHAPE), axis=-1)
    np.testing.assert_allclose(canonical_lps, index_to_lps(stored_affine, stored_index), atol=1e-9)


def test_oblique_series_is_refused_with_its_angle():
    rotation = _rotation_z(5.0)
    affine = _affine(rotation @ [1, 0, 0], rotation @ [0, 1, 0], (0, 0, 1.5))
    with pytest.raises(UnsupportedStudyError, match=r"5\.0 degrees") as caught:
        reorientation(affine, SHAPE)
    assert caught.value.code == "unsupported"


def test_gantry_tilt_is_refused_naming_the_slice_axis():
    tilt = np.radians(3.0)
    affine = _affine((1, 0, 0), (0, 1, 0), (0, 1.5 * np.sin(tilt), 1.5 * np.cos(tilt)))
    with pytest.raises(UnsupportedStudyError, match=r"axis 0 is 3\.0 degrees"):
        reorientation(affine, SHAPE)


def test_small_tilt_is_accepted_and_kept_in_the_affine():
    rotation = _rotation_z(0.5)
    affine = _affine(rotation @ [1, 0, 0], rotation @ [0, 1, 0], (0, 0, 1.5))
    assert axis_obliquity_deg(affine) == pytest.approx([0.0, 0.5, 0.5], abs=1e-9)
    result = reorientation(affine, SHAPE)
    assert result.permutation == (0, 1, 2) and not any(result.flips)
    np.testing.assert_allclose(result.affine, affine)
    with pytest.raises(UnsupportedStudyError):
        reorientation(affine, SHAPE, tolerance_deg=0.25)


def test_degenerate_geometry_is_corrupt():
    with pytest.raises(CorruptStudyError, match="degenerate"):
        reorientation(_affine((1, 0, 0), (0, 1, 0), (0, 0, 0)), SHAPE)
