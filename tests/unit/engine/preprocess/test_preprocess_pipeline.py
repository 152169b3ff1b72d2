"""The DALI pipeline on the CPU: orientation, resampling, windowing, padding, batching."""

from __future__ import annotations

import numpy as np
import pytest
from preprocess_volumes import BALL_CENTRE_LPS, ball_field, make_volume, smooth_field

from engine.errors import UnsupportedStudyError
from engine.preprocess import Preprocessor, lps_to_model, model_to_lps, plan_sample, preprocess
from engine.preprocess import preprocessor as preprocessor_module
from engine.preprocess.reference import reference_tensor

SHAPE = (40, 64, 64)  # slices of 1.25 mm, pixels of 0.7 mm: 50 x 44.8 x 44.8 mm

# The same physical field of view stored five ways (DICOM row cosine, column cosine,
# slice step, pixel spacing, shape).
STORAGE = {
    "HFS ascending": ((1, 0, 0), (0, 1, 0), (0, 0, 1.25), (0.7, 0.7), SHAPE),
    "HFS descending": ((1, 0, 0), (0, 1, 0), (0, 0, -1.25), (0.7, 0.7), SHAPE),
    "FFS ascending": ((-1, 0, 0), (0, 1, 0), (0, 0, 1.25), (0.7, 0.7), SHAPE),
    "FFS descending": ((-1, 0, 0), (0, 1, 0), (0, 0, -1.25), (0.7, 0.7), SHAPE),
    # sagittal slices along x, rows running down (-z), columns running posterior (+y)
    "sagittal": ((0, 1, 0), (0, 0, -1), (0.7, 0, 0), (1.25, 0.7), (64, 40, 64)),
}


def _stored(name: str, field=None, **kwargs):
    row, column, step, spacing, shape = STORAGE[name]
    return make_volume(
        shape, field or ball_field(), row_cosine=row, column_cosine=column,
        slice_step=step, pixel_spacing=spacing, **kwargs,
    )


@pytest.fixture(scope="module")
def ball_results(preprocessor):
    return {name: preprocessor([_stored(name)])[0] for name in STORAGE}


def test_one_object_stored_five_ways_gives_one_model_tensor(ball_results):
    reference = ball_results["HFS ascending"]
    assert reference.tensor.shape == (32, 32, 32) and reference.content_shape == (25, 22, 22)
    for name, result in ball_results.items():
        np.testing.assert_allclose(result.affine, reference.affine, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(result.tensor, reference.tensor, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", list(STORAGE))
def test_bright_ball_maps_back_to_its_lps_position(ball_results, name):
    """The brightest model voxel is within one model voxel (2 mm per axis) of the blob's
    centre, and the centroid of the blob's model voxels within a quarter of one (0.5 mm;
    measured 0.15 mm), so a half-voxel slip of the grid convention would fail."""
    result = ball_results[name]
    assert result.tensor.dtype == np.float32
    brightest = np.unravel_index(np.argmax(result.tensor), result.tensor.shape)
    assert np.all(np.abs(model_to_lps(result, np.array(brightest)) - BALL_CENTRE_LPS) <= 2.0)
    ball = np.argwhere(result.tensor > 0.4)
    weights = result.tensor[tuple(ball.T)]
    centroid = (ball * weights[:, None]).sum(axis=0) / weights.sum()
    assert np.all(np.abs(model_to_lps(result, centroid) - BALL_CENTRE_LPS) <= 0.5)
    np.testing.assert_allclose(lps_to_model(result, model_to_lps(result, centroid)), centroid)


def test_canonical_axes_of_the_model_grid(ball_results):
    affine = ball_results["FFS descending"].affine
    np.testing.assert_allclose(affine[:3, :3], [[0, 0, 2], [0, 2, 0], [2, 0, 0]], atol=1e-12)


def test_window_maps_hu_linearly_to_unit_range(preprocessor):
    """Uniform volumes, so interpolation plays no part: five values, two pipeline runs."""
    hu_values = [-1000, -200, 500, 1200, 3000]
    volumes = [make_volume((12, 20, 20), lambda lps, v=v: np.full(lps.shape[:-1], float(v)))
               for v in hu_values]
    runs_before = preprocessor.runs
    results = preprocessor(volumes)
    assert preprocessor.runs - runs_before == 2  # batch_size 3: 3 + 2 studies
    expected = [0.0, 0.0, 0.5, 1.0, 1.0]  # window (-200, 1200)
    for result, value in zip(results, expected, strict=True):
        depth, height, width = result.content_shape
        np.testing.assert_allclose(result.tensor[:depth, :height, :width], value, atol=1e-6)


def test_padding_reaches_the_multiple_with_air_and_keeps_the_affine(cpu_settings):
    settings = cpu_settings.model_copy(update={"grid_multiple": 8})
    volume = make_volume((23, 30, 44), lambda lps: np.full(lps.shape[:-1], 1000.0))
    (result,) = Preprocessor(settings)([volume])
    plan = plan_sample(volume.hu, volume.affine, settings)
    assert result.content_shape == (14, 10, 15)  # 28.75 / 2, 21 / 2, 30.8 / 2 mm rounded
    assert result.tensor.shape == (16, 16, 16)
    depth, height, width = result.content_shape
    np.testing.assert_allclose(result.tensor[:depth, :height, :width], 1200 / 1400, atol=1e-6)
    padding = np.ones(result.tensor.shape, bool)
    padding[:depth, :height, :width] = False
    assert np.all(result.tensor[padding] == 0.0)
    np.testing.assert_allclose(result.affine, plan.affine)


def test_a_batch_of_different_shapes_gives_each_its_own_result(preprocessor):
    small = make_volume((40, 64, 64), smooth_field, uid="1.2.3.1")
    large = make_volume((70, 90, 50), smooth_field, slice_step=(0, 0, -1.0),
                        pixel_spacing=(0.6, 0.8), uid="1.2.3.2")
    together = preprocessor([small, large])
    assert [r.tensor.shape for r in together] == [(32, 32, 32), (48, 32, 32)]
    assert [r.study_instance_uid for r in together] == ["1.2.3.1", "1.2.3.2"]
    assert together[1].source_shape == (70, 90, 50)
    np.testing.assert_array_equal(together[1].source_affine, large.affine)
    for volume, result in zip((small, large), together, strict=True):
        (alone,) = preprocessor([volume])
        np.testing.assert_array_equal(result.tensor, alone.tensor)


def test_dali_matches_the_scipy_reference(cpu_settings, preprocessor):
    """DALI and scipy agree to max |difference| <= 1e-4 after normalisation (0.14 HU of the
    1400 HU window), everywhere: borders and padding included. Measured: 7e-7 on these
    volumes, 1e-5 on uniform noise, 2.2e-5 on a 512x512x400 study (the float32 rounding
    of DALI's sample positions and weights); a slip in the grid convention, a flip or an
    axis order shows as differences of order 0.1."""
    volumes = [
        _stored("FFS descending", smooth_field, noise_hu=30.0),
        _stored("sagittal", smooth_field, noise_hu=30.0),
        make_volume((33, 70, 50), smooth_field, slice_step=(0, 0, -3.0), pixel_spacing=(0.9, 1.1),
                    noise_hu=30.0),
    ]
    for volume, result in zip(volumes, preprocessor(volumes), strict=True):
        plan = plan_sample(volume.hu, volume.affine, cpu_settings)
        expected = reference_tensor(volume.hu, plan, cpu_settings.hu_window)
        assert result.tensor.shape == expected.shape
        assert np.abs(result.tensor - expected).max() <= 1e-4
        assert 0.05 < result.tensor.std()  # the field is not flat: the check has teeth


def test_crop_to_max_shape_keeps_the_ball_where_the_affine_says(cpu_settings):
    settings = cpu_settings.model_copy(update={"max_shape": (16, 16, 16)})
    (result,) = Preprocessor(settings)([_stored("FFS descending")])
    assert result.tensor.shape == (16, 16, 16)
    assert result.crop_start != (0, 0, 0)
    brightest = np.unravel_index(np.argmax(result.tensor), result.tensor.shape)
    assert result.tensor[brightest] > 0.75  # the blob (peak 1040 HU: 0.886) survived the crop
    assert np.all(np.abs(model_to_lps(result, np.array(brightest)) - BALL_CENTRE_LPS) <= 2.0)


def test_one_failing_study_does_not_stop_the_batch(preprocessor):
    tilt = np.radians(10.0)
    oblique = make_volume((10, 16, 16), ball_field(),
                          row_cosine=(np.cos(tilt), np.sin(tilt), 0),
                          column_cosine=(-np.sin(tilt), np.cos(tilt), 0))
    fine = make_volume((10, 16, 16), ball_field())
    results = preprocessor.run_each([fine, oblique, fine])
    assert isinstance(results[1], UnsupportedStudyError) and "10.0 degrees" in str(results[1])
    assert results[0].tensor.shape == results[2].tensor.shape == (16, 16, 16)
    with pytest.raises(UnsupportedStudyError):
        preprocessor([fine, oblique])


def test_pipeline_is_built_once_and_reused(monkeypatch, cpu_settings):
    builds = []
    real_build = preprocessor_module.build_pipeline

    def counting_build(*args, **kwargs):
        builds.append(args)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(preprocessor_module, "build_pipeline", counting_build)
    worker = Preprocessor(cpu_settings)
    pipeline = worker.pipeline
    volume = make_volume((10, 16, 16), ball_field())
    for _ in range(3):
        worker([volume, volume])
    assert len(builds) == 1
    assert worker.pipeline is pipeline
    assert worker.runs == 3


def test_preprocess_shares_one_preprocessor_per_settings(cpu_settings):
    volume = make_volume((10, 16, 16), ball_field())
    preprocess([volume], cpu_settings)
    misses = preprocessor_module._shared_preprocessor.cache_info().misses
    first = preprocess([volume], cpu_settings.model_copy())
    assert preprocessor_module._shared_preprocessor.cache_info().misses == misses
    assert first[0].tensor.shape == (16, 16, 16)


def test_the_pipeline_lets_go_of_the_source_volumes(preprocessor):
    """The source arrays go to DALI without a copy; once a call returns, DALI must not
    keep them alive (a worker would otherwise hold earlier studies' voxels)."""
    import gc
    import weakref

    volumes = [make_volume((12, 20, 20), ball_field()) for _ in range(2)]
    alive = [weakref.ref(volume.hu) for volume in volumes]
    preprocessor(volumes)
    del volumes
    gc.collect()
    assert [ref() is None for ref in alive] == [True, True]
