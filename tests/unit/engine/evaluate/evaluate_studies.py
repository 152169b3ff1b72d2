"""Small hand-made phantom studies on disk, and an oracle backend that segments them exactly.

A study is a lower spine (T10-L5 and the sacrum) painted as a class map on an axial grid of
1.5 mm pixels and 2.5 mm slices, written as CT DICOM slices head first (slice 0 at the top,
as the phantom generator writes them), with a truth.json and a labels.npz in the phantom's
format. The DICOM loader stacks slices bottom up, so the label volume and the loaded volume
are flipped with respect to each other: the evaluation must find that out by itself.

:class:`OracleBackend` answers the segmentation with the true class map sampled at the
model grid's voxel centres (scipy's ``affine_transform``, independent of the code under
test); it learns the grid of the study being screened from :class:`RecordingPreprocessor`.
Its classifier calls a fracture on the crops whose position (cranial to caudal) it is told.
Identifiers are synthetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
)
from scipy import ndimage

from engine.models.contract import SEG_CLASSES
from engine.postprocess.levels import BODY, DISC, RIB_HEAD, SACRUM
from engine.preprocess import Preprocessor
from engine.volume import index_to_lps

PIXEL_MM, SLICE_MM, MATRIX = 1.5, 2.5, 48
LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
BODY_SLICES, DISC_SLICES, MARGIN = 8, 2, 4
HU = {0: -100, BODY: 250, DISC: 80, SACRUM: 300, RIB_HEAD: 400}


@dataclass
class HandStudy:
    uid: str
    folder: Path
    class_map: np.ndarray
    """Classes on the storage grid (slice 0 superior)."""
    affine: np.ndarray
    """Storage index -> LPS."""
    truth: dict = field(repr=False)


def storage_affine(top_z: float = 150.0) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, 0] = (0.0, 0.0, -SLICE_MM)  # slice index runs to the feet
    affine[:3, 1] = (0.0, PIXEL_MM, 0.0)  # row index runs posterior
    affine[:3, 2] = (PIXEL_MM, 0.0, 0.0)  # column index runs to the patient's left
    affine[:3, 3] = (-36.0, -36.0, top_z)
    return affine


def paint_spine(wedge: str | None = None, loss: float = 0.5) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class map and body labels (1.. per level, then S1) in storage order."""
    depth = MARGIN + len(LEVELS) * (BODY_SLICES + DISC_SLICES) + 16 + MARGIN
    cmap = np.zeros((depth, MATRIX, MATRIX), np.uint8)
    labels = np.zeros_like(cmap)
    top = MARGIN
    for n, level in enumerate(LEVELS):
        body = np.ones((BODY_SLICES, 18, 20), bool)  # rows 14..31 (anterior first), cols 14..33
        if level == wedge:
            lost = round(BODY_SLICES * loss)
            for row in range(18):
                body[: round(lost * (1 - row / 17)), row, :] = False  # superior, anterior
        cmap[top : top + BODY_SLICES, 14:32, 14:34][body] = BODY
        labels[top : top + BODY_SLICES, 14:32, 14:34][body] = n + 1
        if level.startswith("T"):
            cmap[top + 2 : top + 6, 30:35, 8:12] = RIB_HEAD
            cmap[top + 2 : top + 6, 30:35, 36:40] = RIB_HEAD
        cmap[top + BODY_SLICES : top + BODY_SLICES + DISC_SLICES, 14:32, 14:34] = DISC
        top += BODY_SLICES + DISC_SLICES
    cmap[top : top + 16, 12:34, 12:36] = SACRUM
    labels[top : top + 10, 12:34, 12:36] = len(LEVELS) + 1  # S1: the top 25 mm of the sacrum
    return cmap, labels, [*LEVELS, "S1"]


def _slice_dataset(uid: str, series_uid: str, k: int, affine: np.ndarray, pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{series_uid}.{k + 1}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID = "PHANTOM^0001", "PHANTOM0001"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid, series_uid
    ds.FrameOfReferenceUID = uid + ".9"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 2, k + 1
    ds.PatientPosition, ds.ImageType = "HFS", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = ds.Columns = MATRIX
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.ImagePositionPatient = [float(v) for v in index_to_lps(affine, np.array([k, 0, 0]))]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [PIXEL_MM, PIXEL_MM], SLICE_MM
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
    ds.PixelData = pixels.astype(np.int16).tobytes()
    return ds


def write_study(
    root: Path, uid: str, *, wedge: str | None = None, confounders: list[dict] | None = None
) -> HandStudy:
    """``root/<uid>/``: DICOM slices, truth.json and labels.npz (no affine, as the phantom writes)."""
    cmap, labels, levels = paint_spine(wedge)
    affine = storage_affine()
    folder = root / uid
    folder.mkdir(parents=True)
    hu = np.vectorize(HU.get)(cmap).astype(np.int16)
    for k in range(cmap.shape[0]):
        _slice_dataset(uid, uid + ".2", k, affine, hu[k]).save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
    vertebrae = []
    for value, level in enumerate(levels, start=1):
        centroid = np.argwhere(labels == value).mean(axis=0)
        grade = 3 if level == wedge else 0
        vertebrae.append({
            "level": level, "label_value": value, "genant_grade": grade,
            "centroid_lps_mm": [round(float(c), 3) for c in index_to_lps(affine, centroid)],
            "height_loss": 0.5 if grade else 0.02, "morphology": "wedge" if grade else "none",
        })
    truth = {"study_instance_uid": uid, "vertebrae": vertebrae, "confounders": confounders or []}
    (folder / "truth.json").write_text(json.dumps(truth, indent=2))
    np.savez_compressed(folder / "labels.npz", labels=labels)
    return HandStudy(uid, folder, cmap, affine, truth)


class RecordingPreprocessor(Preprocessor):
    """The real DALI preprocessor, remembering the model grid of the last study it produced."""

    last = None

    def __call__(self, volumes):
        outputs = super().__call__(volumes)
        RecordingPreprocessor.last = outputs[-1]
        return outputs


class OracleBackend:
    """Exact segmentation of :class:`HandStudy` studies; fractures called by crop position."""

    seg_classes = SEG_CLASSES
    crop_size = 16

    def __init__(self, studies: list[HandStudy], fractured: dict[str, set[int]]):
        self.studies = {s.uid: s for s in studies}
        self.fractured = fractured
        self.current: str | None = None

    @property
    def versions(self) -> dict[str, str]:
        return {"vertebra_seg": "oracle", "vertebra_cls": "oracle"}

    def segment(self, volume: np.ndarray) -> np.ndarray:
        model_input = RecordingPreprocessor.last
        study = self.studies[model_input.study_instance_uid]
        self.current = study.uid
        to_storage = np.linalg.inv(study.affine) @ model_input.affine
        classes = ndimage.affine_transform(
            study.class_map, to_storage[:3, :3], offset=to_storage[:3, 3], output_shape=volume.shape,
            order=0, mode="constant", cval=0,
        )
        logits = np.full((len(SEG_CLASSES), *volume.shape), -8.0, np.float32)
        for c in range(len(SEG_CLASSES)):
            logits[c][classes == c] = 8.0
        return logits

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        called = self.fractured.get(self.current, set())
        n = crops.shape[0]
        probability = np.array([0.97 if i in called else 0.03 for i in range(n)], np.float32)
        grades = np.array([[0.01, 0.01, 0.03, 0.95] if i in called else [0.97, 0.01, 0.01, 0.01]
                           for i in range(n)], np.float32).reshape(n, 4)
        return probability, grades
