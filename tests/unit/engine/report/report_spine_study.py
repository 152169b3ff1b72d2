"""A small synthetic spine written as a real DICOM CT series, and a backend that reads it.

Shared by the report and CLI tests (import it as ``tests.unit.engine.report.report_spine_study``).

The series is axial, head first supine, 2 mm pixels and 2 mm slices: the model grid (2 mm,
axis0 Superior, axis1 Posterior, axis2 Left) is then the source grid itself, so the stand-in
:class:`IntensityBackend` can read each voxel's class back from its windowed intensity
(every class is painted with its own HU value). Everything between the DICOM files and the
result (loading, DALI preprocessing, level labelling, morphometry, grading, fusion) is the
real code path. Identifiers are synthetic (``PHANTOM^0001``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from engine.postprocess.levels import BACKGROUND, BODY, DISC, RIB_HEAD, SACRUM

SPACING_MM = 2.0
CLASS_HU = {BACKGROUND: 0, DISC: 200, BODY: 500, SACRUM: 800, RIB_HEAD: 1100}
"""HU painted per class; windowed by [-200, 1200] they are 1/7, 2/7, 1/2, 5/7 and 13/14."""
HU_WINDOW = (-200.0, 1200.0)
LEVELS = ("T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
ROWS = COLUMNS = 48


@dataclass(frozen=True)
class SpineStudy:
    hu: np.ndarray
    """int16 (slice, row, column) = (Superior, Posterior, Left) as stored in the series."""
    classes: np.ndarray
    levels: tuple[str, ...]
    body_centres: np.ndarray
    """Per level: (slice, row, column) centre of its body, fractional voxels."""
    study_uid: str
    origin: tuple[float, float, float]


def spine_volume(
    wedge_level: str | None = None,
    loss: float = 0.5,
    lateral_shift: float = 0.0,
    study_uid: str | None = None,
) -> SpineStudy:
    """T9..L5 bodies (T9..T12 with rib heads) above a sacrum; one wedge if asked.

    ``lateral_shift`` (voxels) bends the spine to the left and back along a half sine wave,
    a scoliosis whose apex is the middle of the column.
    """
    n_levels = len(LEVELS)
    depth = 12 + n_levels * 13 + 22
    classes = np.zeros((depth, ROWS, COLUMNS), dtype=np.uint8)
    centres = []
    top = depth - 6
    for i, level in enumerate(LEVELS):
        shift = round(lateral_shift * np.sin(np.pi * (i + 0.5) / n_levels))
        c0 = 18 + shift
        body = np.ones((10, 14, 12), dtype=bool)
        if level == wedge_level:
            lost = round(10 * loss)
            for a in range(14):  # low row index = anterior: the front loses most height
                cut = round(lost * (1 - a / 13))
                if cut:
                    body[10 - cut :, a, :] = False
        region = classes[top - 10 : top, 16:30, c0 : c0 + 12]
        region[body] = BODY
        if level.startswith("T"):
            classes[top - 7 : top - 3, 28:32, c0 - 6 : c0 - 2] = RIB_HEAD
            classes[top - 7 : top - 3, 28:32, c0 + 14 : c0 + 18] = RIB_HEAD
        classes[top - 13 : top - 10, 16:30, c0 : c0 + 12] = DISC
        centres.append((top - 5.5, 22.5, c0 + 5.5))
        top -= 13
    classes[top - 18 : top, 14:32, 16:32] = SACRUM
    hu = np.zeros(classes.shape, dtype=np.int16)
    for value, level_hu in CLASS_HU.items():
        hu[classes == value] = level_hu
    return SpineStudy(
        hu=hu,
        classes=classes,
        levels=LEVELS,
        body_centres=np.array(centres),
        study_uid=study_uid or generate_uid(),
        origin=(-48.0, -60.0, -300.0),
    )


def write_spine_series(study: SpineStudy, folder: Path, *, series_number: int = 3) -> Path:
    """One CT Image Storage file per slice under ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    frame_of_reference = generate_uid()
    x0, y0, z0 = study.origin
    for k in range(study.hu.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName = "PHANTOM^0001"
        ds.PatientID = "PHANTOM0001"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study.study_uid
        ds.StudyDate = "20240102"
        ds.StudyTime = "101500"
        ds.AccessionNumber = "ACC0001"
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_reference
        ds.Modality = "CT"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "HFS"
        ds.ConvolutionKernel = "B30f"
        ds.KVP = 120
        ds.SliceThickness = SPACING_MM
        ds.ImagePositionPatient = [x0, y0, z0 + SPACING_MM * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [SPACING_MM, SPACING_MM]
        ds.Rows, ds.Columns = study.hu.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1.0, 0.0, "HU"
        ds.PixelData = study.hu[k].astype(np.int16).tobytes()
        ds.save_as(folder / f"slice{k:04d}.dcm", enforce_file_format=True)
    return folder


class IntensityBackend:
    """Stand-in models: the class of a voxel is the class painted at its intensity.

    ``fractured`` names levels whose crops the classifier calls grade-3 fractures; crops come
    cranial to caudal, as the screening core cuts them, so the n-th crop is the n-th level of
    ``levels`` present in the study. ``confirm_all`` makes the fracture head say yes to every
    crop with the grade head at 0, so that the grade is the measured one (the fusion takes the
    higher of the two): for tests of the measurement path over several studies.
    """

    seg_classes = ("background", "vertebral_body", "intervertebral_disc", "sacrum", "rib_head")
    crop_size = 16

    def __init__(self, levels: tuple[str, ...] = LEVELS, fractured: frozenset[str] = frozenset(),
                 confirm_all: bool = False):
        self.levels = levels
        self.fractured = fractured
        self.confirm_all = confirm_all
        self.segment_calls = 0
        self._crops_seen = 0

    @property
    def versions(self) -> dict[str, str]:
        return {"vertebra_seg": "stand-in", "vertebra_cls": "stand-in"}

    def segment(self, volume: np.ndarray) -> np.ndarray:
        self.segment_calls += 1
        self._crops_seen = 0
        lo, hi = HU_WINDOW
        centres = {c: (hu - lo) / (hi - lo) for c, hu in CLASS_HU.items()}
        logits = np.stack(
            [-80.0 * np.abs(volume - centres[c]) for c in range(len(self.seg_classes))]
        ).astype(np.float32)
        return logits

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = crops.shape[0]
        names = self.levels[self._crops_seen : self._crops_seen + n]
        self._crops_seen += n
        hit = np.array([name in self.fractured for name in names] + [False] * (n - len(names)))
        probability = np.where(hit | self.confirm_all, 0.95, 0.05).astype(np.float32)
        grades = np.tile(np.array([0.97, 0.01, 0.01, 0.01], np.float32), (n, 1))
        grades[hit] = [0.02, 0.02, 0.06, 0.90]
        return probability, grades
