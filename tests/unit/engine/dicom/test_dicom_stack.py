"""Each stack fault is handled or refused with a typed error that gives the numbers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from dicom_series_factory import assert_field_matches, make_series
from pydicom.uid import generate_uid

from engine.dicom import load_study
from engine.errors import CorruptStudyError, NotEligibleError, UnsupportedStudyError
from engine.settings import SelectionSettings


def test_identical_duplicate_is_dropped(settings) -> None:
    datasets = make_series()
    twin = copy.deepcopy(datasets[12])
    twin.SOPInstanceUID = generate_uid()  # a second copy of the image under a new UID
    study = load_study([*datasets, twin], settings)
    assert study.volume.shape[0] == 40
    assert study.volume.meta["dropped_duplicates"] == 1
    assert any("1 duplicate image(s)" in w for w in study.warnings)
    assert_field_matches(study.volume)


def test_same_instance_twice_is_ignored(settings) -> None:
    datasets = make_series()
    study = load_study([*datasets, datasets[3]], settings)
    assert study.volume.shape[0] == 40
    assert any("repeated instance" in w for w in study.warnings)


def test_conflicting_duplicate_is_corrupt(settings) -> None:
    datasets = make_series()
    other = copy.deepcopy(datasets[12])
    other.SOPInstanceUID = generate_uid()
    pixels = np.frombuffer(other.PixelData, dtype=np.uint16).copy()
    pixels[:100] += 50
    other.PixelData = pixels.tobytes()
    with pytest.raises(
        CorruptStudyError, match=r"two different images at the same slice position -20\.00 mm"
    ):
        load_study([*datasets, other], settings)


def test_missing_slice_is_refused_with_positions(settings) -> None:
    datasets = make_series()
    del datasets[20]
    with pytest.raises(CorruptStudyError) as caught:
        load_study(datasets, settings)
    message = caught.value.message
    assert "about 1 image(s) missing between slice positions -2.50 and 2.50 mm" in message
    assert "a step of 5.00 mm where the series steps 2.50 mm" in message


def test_missing_slice_is_interpolated_when_allowed(settings) -> None:
    datasets = make_series()
    del datasets[20]
    filling = settings.model_copy(update={"fill_missing_slices": 1})
    study = load_study(datasets, filling)
    assert study.volume.shape[0] == 40
    assert study.volume.meta["filled_slices"] == 1
    assert any("interpolated" in w for w in study.warnings)
    # The field is linear, so interpolation restores it exactly (within rounding).
    assert_field_matches(study.volume)


def test_two_missing_slices_exceed_one_allowed(settings) -> None:
    datasets = make_series()
    del datasets[20:22]
    with pytest.raises(CorruptStudyError, match="about 2 image"):
        load_study(datasets, settings.model_copy(update={"fill_missing_slices": 1}))


def test_uneven_spacing_gives_the_numbers(settings) -> None:
    datasets = make_series()
    for ds in datasets[25:]:
        ds.ImagePositionPatient = [
            ds.ImagePositionPatient[0],
            ds.ImagePositionPatient[1],
            ds.ImagePositionPatient[2] + 0.6,
        ]
    with pytest.raises(UnsupportedStudyError) as caught:
        load_study(datasets, settings)
    assert (
        "uneven slice spacing: 1 step(s) from 3.10 to 3.10 mm around a median of 2.50 mm"
        in caught.value.message
    )


def test_gantry_tilt_is_refused_with_its_angle(settings) -> None:
    step = (0.0, 2.5 * np.tan(np.radians(15.0)), 2.5)
    with pytest.raises(UnsupportedStudyError, match=r"gantry tilt of 15\.00 degrees"):
        load_study(make_series(step=step), settings)


def test_mixed_orientation_is_refused(settings) -> None:
    datasets = make_series()
    datasets[5].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # one coronal image
    with pytest.raises(NotEligibleError, match="mixes image orientations"):
        load_study(datasets, settings)


def test_mixed_image_sizes_are_corrupt(settings) -> None:
    datasets = make_series()
    small = make_series(rows=32, columns=32, series_uid=datasets[0].SeriesInstanceUID)[7]
    datasets[7] = small
    with pytest.raises(
        CorruptStudyError,
        match=r"different sizes in one series: 64x64 \(39 images\), 32x32 \(1 images\)",
    ):
        load_study(datasets, settings)


def test_mixed_pixel_spacing_is_corrupt(settings) -> None:
    datasets = make_series()
    datasets[9].PixelSpacing = [0.9, 0.9]
    with pytest.raises(
        CorruptStudyError, match=r"pixel spacing differs.*\(0\.8, 0\.8\) mm and \(0\.9, 0\.9\) mm"
    ):
        load_study(datasets, settings)


@pytest.mark.parametrize(
    "keyword", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"]
)
def test_missing_geometry_names_the_image(keyword: str, settings) -> None:
    datasets = make_series()
    delattr(datasets[4], keyword)
    with pytest.raises(
        CorruptStudyError, match=rf"{keyword} is missing or malformed in 1 of 40 images: dataset #4"
    ):
        load_study(datasets, settings)


def test_malformed_position_is_corrupt_and_quoted(settings) -> None:
    datasets = make_series()
    datasets[4].ImagePositionPatient = [1.0, 2.0]
    with pytest.raises(
        CorruptStudyError,
        match=r"ImagePositionPatient should hold 3 numbers but holds '1\.0\\\\2\.0'",
    ):
        load_study(datasets, settings)


def test_invalid_orientation_is_corrupt(settings) -> None:
    datasets = make_series()
    for ds in datasets:
        ds.ImageOrientationPatient = [1, 0, 0, 0.5, 0.5, 0]
    with pytest.raises(CorruptStudyError, match="ImageOrientationPatient of .* is invalid"):
        load_study(datasets, settings)


def test_one_position_is_not_a_stack() -> None:
    datasets = make_series(n_slices=2)
    datasets[1].ImagePositionPatient = datasets[0].ImagePositionPatient
    loose = SelectionSettings(min_slices=1, min_coverage_mm=0.1)
    with pytest.raises(NotEligibleError, match="all 2 images lie at one position"):
        load_study(datasets, loose)
