"""The native fast path (pixels read straight from the file) equals pydicom's decoder."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from engine.dicom.decode import decode_frames, native_frame
from engine.dicom.headers import read_header
from engine.errors import CorruptStudyError


def write(path, stored: np.ndarray, bits_stored: int, signed: bool, syntax) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("bits_stored, signed", [(16, True), (12, True), (16, False), (12, False)])
def test_fast_path_equals_pydicom(tmp_path, syntax, bits_stored, signed):
    rng = np.random.default_rng(bits_stored + 2 * signed)
    if signed:
        stored = rng.integers(-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1), size=(24, 20))
        if bits_stored < 16:  # what some scanners leave in the unused high bits
            stored = stored & ((1 << bits_stored) - 1)
    else:
        stored = rng.integers(0, 2**bits_stored, size=(24, 20))
    path = tmp_path / "slice.dcm"
    write(path, stored, bits_stored, signed, syntax)
    header = read_header(path)
    assert header.pixel_offset is not None
    fast = native_frame(header)
    np.testing.assert_array_equal(fast, pydicom.dcmread(path).pixel_array)


def test_truncated_pixels_fall_back_and_fail_typed(tmp_path):
    path = tmp_path / "cut.dcm"
    write(path, np.zeros((32, 32)), 16, True, ExplicitVRLittleEndian)
    data = path.read_bytes()
    path.write_bytes(data[:-500])
    header = read_header(path)
    assert native_frame(header) is None  # too short for the fast path
    with pytest.raises(CorruptStudyError):
        list(decode_frames(header, None))
