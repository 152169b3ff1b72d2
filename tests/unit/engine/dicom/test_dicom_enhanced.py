"""Enhanced multi-frame CT: functional groups give the same volume as classic files."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_series_factory import (
    FFS_SPEC,
    assert_field_matches,
    make_enhanced,
    make_series,
    write_series,
)
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import RLELossless

from engine.dicom import load_study, scan_folder
from engine.errors import CorruptStudyError


@pytest.mark.parametrize(
    "per_frame_rescale", [False, True], ids=["shared-rescale", "per-frame-rescale"]
)
def test_enhanced_file_matches_classic_series(per_frame_rescale: bool, tmp_path, settings) -> None:
    classic = load_study(make_series(), settings).volume
    write_series(
        [make_enhanced(per_frame_rescale=per_frame_rescale, shuffle_frames=True, seed=3)], tmp_path
    )
    study = load_study(tmp_path, settings)
    volume = study.volume
    np.testing.assert_array_equal(volume.hu, classic.hu)
    np.testing.assert_allclose(volume.affine, classic.affine, atol=1e-6)
    assert volume.meta["enhanced_multiframe"] is True
    assert volume.meta["kernel"] == "B30f"  # read from the CT Reconstruction macro
    assert volume.meta["n_instances"] == 1 and volume.meta["n_slices"] == 40


def test_enhanced_dataset_in_memory_feet_first(settings) -> None:
    volume = load_study([make_enhanced(FFS_SPEC, shuffle_frames=True)], settings).volume
    assert_field_matches(volume)
    assert volume.meta["patient_position"] == "FFS"


def test_enhanced_compressed(settings) -> None:
    ds = make_enhanced()
    ds.compress(RLELossless)
    assert_field_matches(load_study([ds], settings).volume)


def test_per_frame_geometry_overrides_shared(settings) -> None:
    """Orientation and spacing given per frame (not shared) are read from each frame."""
    ds = make_enhanced()
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation, measures = shared.PlaneOrientationSequence, shared.PixelMeasuresSequence
    del shared.PlaneOrientationSequence
    del shared.PixelMeasuresSequence
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.PlaneOrientationSequence = orientation
        item.PixelMeasuresSequence = measures
    assert_field_matches(load_study([ds], settings).volume)


def test_frame_count_mismatch_is_corrupt(settings) -> None:
    ds = make_enhanced()
    ds.NumberOfFrames = 41
    with pytest.raises(
        CorruptStudyError,
        match="NumberOfFrames is 41 but the per-frame functional groups describe 40",
    ):
        load_study([ds], settings)


def test_missing_plane_position_is_corrupt(settings) -> None:
    ds = make_enhanced()
    ds.PerFrameFunctionalGroupsSequence[6].PlanePositionSequence = DicomSequence([Dataset()])
    with pytest.raises(
        CorruptStudyError,
        match=r"ImagePositionPatient is missing or malformed in 1 of 40 images: dataset #0 frame 7",
    ):
        load_study([ds], settings)


def test_scan_reads_frames_from_headers(tmp_path) -> None:
    write_series([make_enhanced(n_slices=5)], tmp_path)
    (header,) = scan_folder(tmp_path)
    assert header.enhanced and header.number_of_frames == 5
    assert [frame.frame_index for frame in header.frames] == [0, 1, 2, 3, 4]
    assert header.frames[4].position == pytest.approx((-25.0, -25.0, -40.0))
    assert header.frames[0].pixel_spacing == (0.8, 0.8)
