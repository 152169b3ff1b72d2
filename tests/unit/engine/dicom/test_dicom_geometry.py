"""Geometry: sorting along the normal, the affine, and LPS round trips (HFS, FFS, shuffled)."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_series_factory import (
    FFS_SPEC,
    HFS_SPEC,
    SeriesSpec,
    assert_field_matches,
    field_hu,
    make_series,
    write_series,
)

from engine.dicom import load_study
from engine.dicom.geometry import (
    mean_step,
    obliquity_deg,
    orientation_defect,
    plane_name,
    slice_normal,
    tilt_deg,
)
from engine.volume import index_to_lps, lps_to_index

HFS, FFS = HFS_SPEC, FFS_SPEC


def test_slice_normal_is_row_cross_column() -> None:
    assert np.allclose(slice_normal((1, 0, 0, 0, 1, 0)), [0, 0, 1])
    assert np.allclose(slice_normal((-1, 0, 0, 0, 1, 0)), [0, 0, -1])
    assert np.allclose(slice_normal((0, 1, 0, 0, 0, -1)), [-1, 0, 0])  # sagittal


def test_plane_names_and_obliquity() -> None:
    assert plane_name(np.array([0.0, 0.0, 1.0]), 10) == "axial"
    assert plane_name(np.array([1.0, 0.0, 0.0]), 10) == "sagittal"
    assert plane_name(np.array([0.0, -1.0, 0.0]), 10) == "coronal"
    tilted = np.array([0.0, np.sin(np.radians(30)), np.cos(np.radians(30))])
    assert obliquity_deg(tilted) == pytest.approx(30.0)
    assert plane_name(tilted, 10) == "oblique"


def test_orientation_defects_are_named() -> None:
    assert orientation_defect((1, 0, 0, 0, 1, 0)) is None
    assert "length" in orientation_defect((2, 0, 0, 0, 1, 0))
    assert "45.0 degrees" in orientation_defect((1, 0, 0, np.sqrt(0.5), np.sqrt(0.5), 0))


def test_mean_step_and_tilt() -> None:
    step = mean_step(np.array([0.0, 0.0, 0.0]), np.array([0.0, 10.0, 90.0]), 10)
    assert np.allclose(step, [0.0, 10 / 9, 10.0])
    assert tilt_deg(step, np.array([0.0, 0.0, 1.0])) == pytest.approx(np.degrees(np.arctan(1 / 9)))
    assert tilt_deg(-step, np.array([0.0, 0.0, 1.0])) == pytest.approx(
        tilt_deg(step, np.array([0.0, 0.0, 1.0]))
    )
    with pytest.raises(ValueError, match="two slices"):
        mean_step(np.zeros(3), np.zeros(3), 1)


@pytest.mark.parametrize("spec", [HFS, FFS], ids=["HFS", "FFS"])
def test_round_trip_from_shuffled_files(spec: SeriesSpec, tmp_path, settings) -> None:
    """Files with random names in sub-folders, written in random order, load in LPS order."""
    write_series(make_series(spec), tmp_path, seed=7)
    study = load_study(tmp_path, settings)
    volume = study.volume
    assert volume.hu.dtype == np.int16
    assert volume.shape == (spec.n_slices, spec.rows, spec.columns)
    assert volume.meta["patient_position"] == spec.patient_position
    assert_field_matches(volume)
    # A known LPS point: the centre of pixel (row 5, column 9) of acquired slice 17.
    point = spec.lps_grid(17)[5, 9]
    index = lps_to_index(volume.affine, point)
    nearest = np.rint(index).astype(int)
    assert np.abs(index - nearest).max() < 1e-3
    assert volume.hu[tuple(nearest)] == np.rint(field_hu(point))
    assert np.allclose(index_to_lps(volume.affine, index), point, atol=1e-6)
    # Slices run along the slice normal: the first slice is the lowest distance along it.
    assert np.allclose(volume.affine[:3, 0], spec.normal * spec.slice_spacing)


def test_instance_numbers_do_not_decide_the_order(settings) -> None:
    """InstanceNumber reversed against position: the volume still follows positions."""
    datasets = make_series()
    for ds in datasets:
        ds.InstanceNumber = 1000 - ds.InstanceNumber
    volume = load_study(datasets[::-1], settings).volume
    assert_field_matches(volume)
    assert volume.affine[2, 3] == pytest.approx(HFS.origin[2])


def test_small_tilt_is_kept_in_a_sheared_affine(settings) -> None:
    """A tilt under the limit keeps exact geometry: the step vector carries the shear."""
    step = (0.0, 2.5 * np.tan(np.radians(0.3)), 2.5)
    study = load_study(make_series(step=step), settings)
    assert np.allclose(study.volume.affine[:3, 0], step, atol=1e-4)
    assert study.volume.meta["gantry_tilt_deg"] == pytest.approx(0.3, abs=0.01)
    assert any("gantry tilt of 0.30 degrees" in w for w in study.warnings)
    assert_field_matches(study.volume)
