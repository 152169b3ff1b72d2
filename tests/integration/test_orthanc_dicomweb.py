"""A DICOM instance stored into Orthanc over STOW-RS and retrieved over WADO-RS / QIDO-RS."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from streaming.dicomweb import DicomWeb, PacsRequestError

pytestmark = pytest.mark.integration


def make_ct_slice(pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = "PHANTOM^IT", "PHANTOM-IT"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.ImagePositionPatient = [-100.0, -100.0, 50.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = pixels.astype(np.int16).tobytes()
    return ds


def test_store_then_retrieve_and_search(pacs):
    pixels = np.arange(32 * 32, dtype=np.int16).reshape(32, 32) - 500
    sent = make_ct_slice(pixels)
    web = DicomWeb(pacs)

    response = web.store([sent])
    assert "ReferencedSOPSequence" in response
    assert not response.get("FailedSOPSequence")

    retrieved = web.retrieve_study(sent.StudyInstanceUID)
    assert len(retrieved) == 1
    got = retrieved[0]
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert got.SeriesInstanceUID == sent.SeriesInstanceUID
    np.testing.assert_array_equal(got.pixel_array, pixels)

    found = web.search_studies(StudyInstanceUID=sent.StudyInstanceUID)
    assert [s["0020000D"]["Value"][0] for s in found] == [sent.StudyInstanceUID]


def test_unknown_study_is_a_typed_error(pacs):
    with pytest.raises(PacsRequestError, match="HTTP 404"):
        DicomWeb(pacs).retrieve_study(generate_uid())
