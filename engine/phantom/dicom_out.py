"""Writing a phantom study as DICOM CT files, one file per image.

Each series builds its dataset once (every attribute that does not change per image) and
each image copies it and sets only its own: SOP Instance UID, instance number, position,
slice location and pixels. Pixels are stored as HU + 1024 with RescaleIntercept -1024,
unsigned 12-bit or signed 16-bit as the acquisition says. Transfer syntaxes: explicit VR
little endian, or lossless RLE, JPEG-LS and JPEG 2000 through pydicom's encoders.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from engine import __version__
from engine.phantom.series import SeriesData, phantom_uid

TRANSFER_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
}
MANUFACTURER = "vcfscreen phantom"


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{round(float(value), 5):.10g}"
    return "0" if text in ("-0", "0") else text


def study_attributes(seed: int, study_uid: str, patient, acquisition) -> dict:
    """Patient, study and equipment attributes shared by every series (synthetic only)."""
    day = date(2021, 1, 1) + timedelta(days=seed % 1460)
    seconds = 7 * 3600 + (seed * 7919) % (12 * 3600)
    clock = f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}"
    return {
        "SpecificCharacterSet": "ISO_IR 100",
        "StudyDate": day.strftime("%Y%m%d"), "StudyTime": clock,
        "SeriesDate": day.strftime("%Y%m%d"), "AcquisitionDate": day.strftime("%Y%m%d"),
        "ContentDate": day.strftime("%Y%m%d"), "ContentTime": clock,
        "AccessionNumber": f"PHA{patient.number:07d}",
        "Modality": "CT", "Manufacturer": MANUFACTURER, "ManufacturerModelName": "TAP phantom",
        "SoftwareVersions": __version__, "ReferringPhysicianName": "",
        "StudyDescription": "CT CHEST ABDOMEN PELVIS W CONTRAST",
        "PatientName": patient.name, "PatientID": patient.patient_id, "PatientBirthDate": "",
        "PatientSex": patient.sex, "PatientAge": f"{patient.age:03d}Y",
        "ContrastBolusAgent": "IV CONTRAST", "ContrastBolusRoute": "IV",
        "BodyPartExamined": "CHESTABDPELVIS", "ProtocolName": "CT TAP PORTAL VENOUS",
        "PatientPosition": acquisition.position,
        "StudyInstanceUID": study_uid, "StudyID": "1",
        "FrameOfReferenceUID": phantom_uid(seed, "frame"), "PositionReferenceIndicator": "",
        "KVP": _ds(acquisition.kvp), "DataCollectionDiameter": "500", "ReconstructionDiameter": _ds(acquisition.fov_mm),
        "GantryDetectorTilt": "0", "TableHeight": "150", "RotationDirection": "CW",
        "XRayTubeCurrent": 180 + seed % 120, "ExposureTime": 500, "FilterType": "BODY FILTER",
        "ConvolutionKernel": acquisition.kernel, "RevolutionTime": 0.5, "SpiralPitchFactor": 0.984375,
        "SingleCollimationWidth": 0.625, "TotalCollimationWidth": 40.0, "CTDIvol": 8.0 + seed % 70 / 10.0,
    }


def _template(series: SeriesData, shared: dict, signed: bool) -> Dataset:
    ds = Dataset()
    for keyword, value in shared.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = list(series.image_type)
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDescription = series.description
    ds.AcquisitionNumber = 1
    ds.SliceThickness = _ds(series.thickness)
    if series.spacing_between is not None:
        ds.SpacingBetweenSlices = _ds(series.spacing_between)
    ds.PixelSpacing = [_ds(series.pixel_spacing[0]), _ds(series.pixel_spacing[1])]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(series.images.shape[1]), int(series.images.shape[2])
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    if series.image_type[0] == "DERIVED":
        ds.DerivationDescription = "Multiplanar reformat of the axial series"
    return ds


def stored_pixels(hu: np.ndarray, signed: bool) -> np.ndarray:
    """HU -> stored values (HU + 1024), checked to fit the declared pixel format."""
    stored = hu.astype(np.int32) + 1024
    if stored.min() < 0 or stored.max() > 4095:
        raise ValueError(f"HU range {hu.min()}..{hu.max()} does not fit -1024..3071 of 12-bit CT storage")
    return stored.astype(np.int16 if signed else np.uint16)


def write_series(series: SeriesData, folder: Path, shared: dict, seed: int, signed: bool, transfer_syntax: str) -> list[Path]:
    """Write every image of one series; returns the file paths."""
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer syntax {transfer_syntax!r}; choose one of {sorted(TRANSFER_SYNTAXES)}")
    syntax = TRANSFER_SYNTAXES[transfer_syntax]
    template = _template(series, shared, signed)
    paths = []
    for index in range(len(series.images)):
        ds = Dataset()
        ds.update(template)
        sop_uid = phantom_uid(seed, "sop", series.role, index)
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = index + 1
        position = series.positions[index]
        ds.ImagePositionPatient = [_ds(c) for c in position]
        ds.ImageOrientationPatient = [_ds(c) for c in series.orientation_of(index)]
        if series.role != "localizer":
            normal = np.cross(series.orientation_of(index)[:3], series.orientation_of(index)[3:])
            ds.SliceLocation = _ds(float(np.dot(normal, position)))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "VCFSCREEN_PH"
        ds.file_meta = meta
        pixels = stored_pixels(series.images[index], signed)
        if syntax == ExplicitVRLittleEndian:
            ds.PixelData = pixels.tobytes()
            ds["PixelData"].VR = "OW"
        else:
            ds.compress(syntax, pixels)
        path = folder / f"{series.series_number:03d}_{index + 1:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
