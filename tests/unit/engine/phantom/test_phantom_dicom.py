"""DICOM output: layout, attributes, every transfer syntax back to identical HU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from phantom_configs import QUIET, tiny_config

from engine.phantom import generate_study, write_study
from engine.volume import affine_from_dicom, lps_to_index


def _read_series(folder: Path, series_uid: str) -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(path) for path in sorted(folder.glob("*.dcm"))]
    chosen = [ds for ds in datasets if ds.SeriesInstanceUID == series_uid]
    return sorted(chosen, key=lambda ds: int(ds.InstanceNumber))


def _hu(datasets: list[pydicom.Dataset]) -> np.ndarray:
    return np.stack([ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
                     for ds in datasets])


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpegls", "jpeg2000"])
def test_transfer_syntaxes_round_trip_to_identical_hu(tmp_path: Path, syntax: str, signed: bool) -> None:
    config = tiny_config(fov_levels=("T12", "L3"), signed_pixels_probability=float(signed), **QUIET)
    study = generate_study(51, config)
    folder = write_study(study, tmp_path, transfer_syntax=syntax)
    datasets = _read_series(folder, study.truth["series_instance_uid"])
    expected_uid = {"explicit": pydicom.uid.ExplicitVRLittleEndian, "rle": pydicom.uid.RLELossless,
                    "jpegls": pydicom.uid.JPEGLSLossless, "jpeg2000": pydicom.uid.JPEG2000Lossless}[syntax]
    assert {ds.file_meta.TransferSyntaxUID for ds in datasets} == {expected_uid}
    assert {int(ds.PixelRepresentation) for ds in datasets} == {int(signed)}
    assert np.array_equal(_hu(datasets), study.volume.hu)


@pytest.fixture(scope="module")
def written(tmp_path_factory, full_study):
    return full_study, write_study(full_study, tmp_path_factory.mktemp("phantom"))


def test_layout_and_truth_files(written) -> None:
    study, folder = written
    assert folder.name == study.study_instance_uid
    names = sorted(p.name for p in folder.iterdir())
    assert "truth.json" in names and "labels.npz" in names
    dicoms = [n for n in names if n.endswith(".dcm")]
    assert all(re.fullmatch(r"\d{3}_\d{4}\.dcm", n) for n in dicoms)
    assert len(dicoms) == sum(len(s.images) for s in study.series)
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["study_instance_uid"] == study.study_instance_uid
    assert truth["vertebrae"] and {"level", "centroid_lps_mm", "genant_grade"} <= set(truth["vertebrae"][0])
    assert np.array_equal(np.load(folder / "labels.npz")["labels"], study.labels)


def test_screening_series_attributes_and_geometry(written) -> None:
    study, folder = written
    datasets = _read_series(folder, study.truth["series_instance_uid"])
    first, second = datasets[0], datasets[1]
    acquisition = study.truth["acquisition"]
    assert len(datasets) == acquisition["slices"]
    assert first.Modality == "CT" and first.Manufacturer == "vcfscreen phantom"
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert re.fullmatch(r"PHANTOM\^\d+", str(first.PatientName))
    assert first.StudyDescription == "CT CHEST ABDOMEN PELVIS W CONTRAST"
    assert float(first.RescaleIntercept) == -1024 and float(first.RescaleSlope) == 1
    assert float(first.SliceThickness) == acquisition["slice_thickness_mm"]
    assert float(first.SpacingBetweenSlices) == acquisition["spacing_between_slices_mm"]
    assert first.PatientPosition == acquisition["patient_position"]
    assert first.ConvolutionKernel and first.KVP
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)
    iop = np.array(first.ImageOrientationPatient, dtype=float)
    ipp0, ipp1 = (np.array(ds.ImagePositionPatient, dtype=float) for ds in (first, second))
    affine = affine_from_dicom(ipp0, iop[:3], iop[3:], ipp1 - ipp0, tuple(float(x) for x in first.PixelSpacing))
    assert np.allclose(affine, study.volume.affine, atol=1e-3)
    for entry in study.truth["vertebrae"]:
        voxel = tuple(np.round(lps_to_index(affine, np.array(entry["centroid_lps_mm"]))).astype(int))
        assert study.labels[voxel] == entry["label_value"]


def test_extra_series_carry_what_makes_them_ineligible(written) -> None:
    study, folder = written
    records = {s["role"]: s for s in study.truth["series"]}
    assert set(records) == {"screening", "localizer", "thick_axial", "sagittal_reformat"}
    assert [r["role"] for r in records.values() if r["eligible"]] == ["screening"]
    assert all(r["reason"] for r in records.values())
    scout = _read_series(folder, records["localizer"]["series_instance_uid"])
    assert 1 <= len(scout) <= 2 and all("LOCALIZER" in ds.ImageType for ds in scout)
    thick = _read_series(folder, records["thick_axial"]["series_instance_uid"])
    assert float(thick[0].SliceThickness) >= 5.0 and list(thick[0].ImageOrientationPatient)[:2] != [0, 1]
    sagittal = _read_series(folder, records["sagittal_reformat"]["series_instance_uid"])
    assert sagittal[0].ImageType[0] == "DERIVED"
    normal = np.cross(*np.reshape(np.array(sagittal[0].ImageOrientationPatient, dtype=float), (2, 3)))
    assert abs(normal[0]) > 0.99, "sagittal planes are normal to the left-right axis"
    assert len({ds.StudyInstanceUID for ds in scout + thick + sagittal}) == 1
