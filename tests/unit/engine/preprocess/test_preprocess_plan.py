"""The geometry of a preprocessing run: model grid, region of interest, crop and padding."""

from __future__ import annotations

import numpy as np
import pytest
from preprocess_volumes import ball_field, make_volume
from pydantic import ValidationError

from engine.preprocess.plan import (
    body_centre_index,
    crop_start,
    dali_roi,
    padded_extent,
    plan_sample,
    resampled_extent,
)
from engine.settings import PreprocessSettings
from engine.volume import index_to_lps, spacing_of


def _fov_centre_lps(volume) -> np.ndarray:
    return index_to_lps(volume.affine, (np.asarray(volume.shape) - 1) / 2)


def test_extent_is_the_field_of_view_over_the_target_spacing():
    two_mm = np.array([2.0] * 3)
    extent = resampled_extent(np.array([40, 64, 64]), np.array([1.25, 0.7, 0.7]), two_mm)
    assert extent.tolist() == [25, 22, 22]  # 50 mm / 2, 44.8 mm / 2 rounded
    tiny = resampled_extent(np.array([1, 3, 3]), np.array([1.0] * 3), np.array([5.0] * 3))
    assert tiny.tolist() == [1, 1, 1]


@pytest.mark.parametrize("slice_step", [(0, 0, 1.25), (0, 0, -3.0)])
def test_model_grid_has_the_exact_spacing_and_the_source_centre(slice_step):
    volume = make_volume(
        (40, 64, 50), ball_field(), slice_step=slice_step, pixel_spacing=(0.9, 0.7)
    )
    settings = PreprocessSettings(spacing_mm=(2.5, 2.0, 1.5))
    plan = plan_sample(volume.hu, volume.affine, settings)
    np.testing.assert_allclose(spacing_of(plan.affine), [2.5, 2.0, 1.5], rtol=1e-12)
    source_mm = np.asarray(volume.shape) * volume.spacing  # slice, row, column extents
    assert plan.resized_shape == tuple(np.rint(source_mm / [2.5, 2.0, 1.5]).astype(int))
    model_centre = index_to_lps(plan.affine, (np.asarray(plan.resized_shape) - 1) / 2)
    np.testing.assert_allclose(model_centre, _fov_centre_lps(volume), atol=1e-9)


def test_every_model_voxel_centre_lies_inside_the_source_field_of_view():
    volume = make_volume((37, 61, 59), ball_field(), slice_step=(0, 0, -1.1), row_cosine=(-1, 0, 0))
    plan = plan_sample(volume.hu, volume.affine, PreprocessSettings())
    last = np.asarray(plan.resized_shape) - 1
    corners = np.array(
        [[i, j, k] for i in (0, last[0]) for j in (0, last[1]) for k in (0, last[2])]
    )
    source_index = index_to_lps(plan.model_to_source, corners)
    assert np.all(source_index >= -0.5 - 1e-9)
    assert np.all(source_index <= np.asarray(volume.shape) - 0.5 + 1e-9)


def test_roi_of_identity_and_of_a_flip():
    identity = np.eye(4)
    start, end = dali_roi(identity, np.array([5, 6, 7]))
    assert start.tolist() == [0, 0, 0] and end.tolist() == [5, 6, 7]
    flip_last = np.eye(4)
    flip_last[2, 2], flip_last[2, 3] = -1.0, 6.0  # j -> 6 - j over 7 voxels
    start, end = dali_roi(flip_last, np.array([5, 6, 7]))
    assert start.tolist() == [0, 0, 7] and end.tolist() == [5, 6, 0]
    halving = np.diag([2.0, 2.0, 2.0, 1.0])
    halving[:3, 3] = 0.5  # output j samples input 2j + 0.5: the pixel-area convention
    start, end = dali_roi(halving, np.array([3, 3, 3]))
    assert start.tolist() == [0, 0, 0] and end.tolist() == [6, 6, 6]


def test_roi_refuses_a_map_that_mixes_axes():
    mixing = np.eye(4)
    mixing[0, 1] = 0.1
    with pytest.raises(ValueError, match="axis-wise"):
        dali_roi(mixing, np.array([4, 4, 4]))


def test_padding_rounds_up_to_the_multiple():
    assert padded_extent(np.array([25, 22, 1, 16, 17]), 16).tolist() == [32, 32, 16, 16, 32]
    assert padded_extent(np.array([5, 8]), 1).tolist() == [5, 8]


def test_crop_is_centred_and_stays_on_the_grid():
    extent, limit = np.array([100, 100, 40]), np.array([64, 64, 64])
    assert crop_start(extent, limit, np.array([10.0, 90.0, 5.0])).tolist() == [0, 36, 0]
    start = crop_start(extent, limit, np.array([50.0, 47.2, 20.0]))
    assert np.all(np.abs(start[:2] + (64 - 1) / 2 - [50.0, 47.2]) <= 0.5)
    assert start[2] == 0  # within its limit: never cropped


def test_body_centre_ignores_stray_voxels():
    hu = np.full((80, 96, 96), -1000, np.int16)
    hu[20:60, 30:70, 10:50] = 40  # the body
    hu[2, 90, 90] = 800  # a stray bright voxel (noise, a wire) far from it
    centre = body_centre_index(hu, -500.0)
    np.testing.assert_allclose(centre, [39.5, 49.5, 29.5], atol=1.0)  # within the sample step
    air = np.full((10, 12, 14), -1000, np.int16)
    np.testing.assert_allclose(body_centre_index(air, -500.0), [4.5, 5.5, 6.5])


def test_crop_moves_the_affine_by_the_crop_start():
    def upper_body(lps: np.ndarray) -> np.ndarray:
        # Body only between z = -41 and z = 0 mm of a field of view from -59.5 to 59.5 mm.
        return np.where((lps[..., 2] > -41) & (lps[..., 2] < 0), 40.0, -1000.0)

    volume = make_volume((120, 64, 64), upper_body, slice_step=(0, 0, -1.0))
    full = plan_sample(volume.hu, volume.affine, PreprocessSettings())
    cropped = plan_sample(volume.hu, volume.affine, PreprocessSettings(max_shape=(32, 64, 64)))
    assert full.resized_shape == (60, 22, 22)
    assert cropped.resized_shape == (32, 22, 22) and cropped.padded_shape == (32, 32, 32)
    start = np.asarray(cropped.crop_start)
    assert start[1:].tolist() == [0, 0] and 0 < start[0] <= 60 - 32
    np.testing.assert_allclose(cropped.affine[:3, :3], full.affine[:3, :3])
    shifted_origin = full.affine[:3, 3] + full.affine[:3, :3] @ start
    np.testing.assert_allclose(cropped.affine[:3, 3], shifted_origin)
    # The crop (64 mm long) is centred on the body (centre z = -20.5 mm), within one voxel.
    crop_centre = index_to_lps(cropped.affine, (np.asarray(cropped.resized_shape) - 1) / 2)
    assert abs(crop_centre[2] - (-20.5)) <= 2.0


def test_max_shape_must_sit_on_the_grid():
    with pytest.raises(ValidationError, match="multiples of grid_multiple 16"):
        PreprocessSettings(max_shape=(100, 96, 96))
    assert PreprocessSettings(max_shape=(96, 96, 96), grid_multiple=32).max_shape == (96, 96, 96)
    assert PreprocessSettings(max_shape="").max_shape is None


def test_non_int16_volume_is_refused():
    from engine.preprocess.plan import dali_input

    volume = make_volume((8, 8, 8), ball_field())
    plan = plan_sample(volume.hu, volume.affine, PreprocessSettings())
    with pytest.raises(TypeError, match="int16"):
        dali_input(volume.hu.astype(np.float32), plan)
