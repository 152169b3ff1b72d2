"""Small synthetic CT series for the engine.dicom tests, built with pydicom.

Every voxel holds a known linear function of its LPS position, ``5x + 11y + 3z`` HU, so a
test can check the whole geometry of a loaded volume: map each voxel index through the
affine and compare with the function. One voxel off along any axis changes the value by at
least 4 HU, so a tolerance of 1 HU (rounding) still catches every geometry mistake.
Identifiers are synthetic (``PHANTOM^0001``); nothing here depends on engine.phantom.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
FIELD_COEFFICIENTS = np.array([5.0, 11.0, 3.0])


def field_hu(lps: np.ndarray) -> np.ndarray:
    """The HU value the factory writes at an LPS point (before rounding)."""
    return np.asarray(lps, dtype=float) @ FIELD_COEFFICIENTS


@dataclass(frozen=True)
class SeriesSpec:
    """What a synthetic series looks like; every field has a plain CT default."""

    n_slices: int = 40
    rows: int = 64
    columns: int = 64
    pixel_spacing: tuple[float, float] = (0.8, 0.8)
    slice_spacing: float = 2.5
    thickness: float = 2.5
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    origin: tuple[float, float, float] = (-25.0, -25.0, -50.0)
    step: tuple[float, float, float] | None = None
    """Slice-to-slice LPS vector; default: ``slice_spacing`` along the slice normal."""
    patient_position: str = "HFS"
    modality: str = "CT"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    kernel: str = "B30f"
    slope: float = 1.0
    intercept: float = -1024.0
    pixel_representation: int = 0
    series_number: int = 2
    study_uid: str = "1.2.826.0.1.3680043.8.498.1"
    series_uid: str | None = None
    padding_value: int | None = None

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:6])

    @property
    def step_vector(self) -> np.ndarray:
        if self.step is not None:
            return np.asarray(self.step, dtype=float)
        return self.normal * self.slice_spacing

    def position(self, k: int) -> np.ndarray:
        return np.asarray(self.origin, dtype=float) + k * self.step_vector

    def lps_grid(self, k: int) -> np.ndarray:
        """LPS of every pixel of slice k, shape (rows, columns, 3)."""
        row_cos = np.asarray(self.orientation[:3], float)
        col_cos = np.asarray(self.orientation[3:6], float)
        r = np.arange(self.rows)[:, None, None] * col_cos * self.pixel_spacing[0]
        c = np.arange(self.columns)[None, :, None] * row_cos * self.pixel_spacing[1]
        return self.position(k) + r + c

    def hu_slice(self, k: int) -> np.ndarray:
        return np.rint(field_hu(self.lps_grid(k)))


HFS_SPEC = SeriesSpec()
"""Head first supine, the factory default."""
FFS_SPEC = SeriesSpec(
    orientation=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin=(25.0, -25.0, 50.0),
    patient_position="FFS",
)
"""Feet first, as scanners write it: rows run to the patient's right, slices are acquired
from the head downwards, so the slice normal points to the feet."""


def stored_values(spec: SeriesSpec, hu: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    dtype = np.int16 if spec.pixel_representation else np.uint16
    stored = np.rint((hu - intercept) / slope)
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(
            f"HU {hu.min()}..{hu.max()} do not fit {dtype} with slope {slope}, intercept {intercept}"
        )
    return stored.astype(dtype)


def _base_dataset(spec: SeriesSpec, series_uid: str, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    ds.PatientName = "PHANTOM^0001"
    ds.PatientID = "PHANTOM0001"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = spec.study_uid + ".9"
    ds.Modality = spec.modality
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = "SYNTHETIC SERIES"
    ds.Manufacturer = "vcfscreen-tests"
    ds.PatientPosition = spec.patient_position
    ds.ImageType = list(spec.image_type)
    ds.KVP = 120
    ds.Rows, ds.Columns = spec.rows, spec.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = spec.pixel_representation
    if spec.padding_value is not None:
        ds.PixelPaddingValue = spec.padding_value
    return ds


def make_series(spec: SeriesSpec | None = None, **changes: object) -> list[Dataset]:
    """Classic CT Image Storage instances, one per slice, in acquisition order."""
    spec = replace(spec or SeriesSpec(), **changes)  # type: ignore[arg-type]
    series_uid = spec.series_uid or generate_uid()
    datasets = []
    for k in range(spec.n_slices):
        ds = _base_dataset(spec, series_uid, CTImageStorage)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(float(v), 4) for v in spec.position(k)]
        ds.ImageOrientationPatient = list(spec.orientation)
        ds.PixelSpacing = list(spec.pixel_spacing)
        ds.SliceThickness = spec.thickness
        ds.ConvolutionKernel = spec.kernel
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = spec.slope, spec.intercept, "HU"
        ds.PixelData = stored_values(spec, spec.hu_slice(k), spec.slope, spec.intercept).tobytes()
        datasets.append(ds)
    return datasets


def make_enhanced(
    spec: SeriesSpec | None = None,
    *,
    per_frame_rescale: bool = False,
    shuffle_frames: bool = False,
    seed: int = 0,
    **changes: object,
) -> Dataset:
    """One Enhanced CT Image Storage instance holding the whole series.

    Orientation and pixel measures go in the shared functional groups; positions per frame;
    the rescale shared, or per frame (slope 0.5 on odd frames) when ``per_frame_rescale``.
    """
    spec = replace(spec or SeriesSpec(), **changes)  # type: ignore[arg-type]
    ds = _base_dataset(spec, spec.series_uid or generate_uid(), ENHANCED_CT)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = [*spec.image_type[:3], "NONE"][:4]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = spec.n_slices
    order = list(range(spec.n_slices))
    if shuffle_frames:
        random.Random(seed).shuffle(order)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = list(spec.pixel_spacing)
    measures.SliceThickness = spec.thickness
    plane_orientation = Dataset()
    plane_orientation.ImageOrientationPatient = list(spec.orientation)
    reconstruction = Dataset()
    reconstruction.ConvolutionKernel = spec.kernel
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([plane_orientation])
    shared.CTReconstructionSequence = DicomSequence([reconstruction])
    if not per_frame_rescale:
        shared.PixelValueTransformationSequence = DicomSequence(
            [_rescale_item(spec.slope, spec.intercept)]
        )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    items, pixels = [], []
    for frame, k in enumerate(order):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [round(float(v), 4) for v in spec.position(k)]
        item.PlanePositionSequence = DicomSequence([position])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        item.FrameContentSequence = DicomSequence([content])
        slope, intercept = spec.slope, spec.intercept
        if per_frame_rescale:
            slope = 0.5 if frame % 2 else 1.0
            item.PixelValueTransformationSequence = DicomSequence([_rescale_item(slope, intercept)])
        items.append(item)
        pixels.append(stored_values(spec, spec.hu_slice(k), slope, intercept))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    ds.PixelData = np.stack(pixels).tobytes()
    return ds


def _rescale_item(slope: float, intercept: float) -> Dataset:
    item = Dataset()
    item.RescaleSlope, item.RescaleIntercept, item.RescaleType = slope, intercept, "HU"
    return item


def write_series(
    datasets: Sequence[Dataset], folder: Path, *, seed: int = 0, nested: bool = True
) -> list[Path]:
    """Write instances under ``folder`` with shuffled, meaningless names (and sub-folders)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shuffled = list(datasets)
    rng.shuffle(shuffled)
    paths = []
    for index, ds in enumerate(shuffled):
        sub = folder / f"part{index % 3}" if nested else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"x{rng.getrandbits(40):010x}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def assert_field_matches(volume, tolerance: float = 1.0) -> None:
    """Every voxel holds the factory's field at the LPS point the affine gives it."""
    from engine.volume import index_to_lps

    shape = volume.hu.shape
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    expected = np.rint(field_hu(index_to_lps(volume.affine, index.reshape(-1, 3)))).reshape(shape)
    worst = float(np.max(np.abs(volume.hu.astype(float) - expected)))
    if worst > tolerance:
        raise AssertionError(f"volume departs from the field by up to {worst} HU")
