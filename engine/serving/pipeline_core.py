"""The ``vcf_pipeline`` computation, and its results as Triton tensors and back.

Server side (the Python-backend BLS model): :func:`read_spine` runs the same steps, with the
same function, as the in-process screening core (:meth:`engine.screen.Screener.screen_model_input`):
argmax of the segmentation logits, :func:`~engine.postprocess.levels.label_levels`,
:func:`~engine.postprocess.crops.cut_crops` around every classified vertebra, one classifier
run per ``max_batch`` crops, and :func:`~engine.postprocess.crops.soft_body_crop` of each body's
probability (softmax of its channel only). :func:`encode` turns that :class:`SpineReading` into the pipeline's output tensors.

Client side: :func:`decode` rebuilds the identical :class:`SpineReading` from those tensors, so
findings are built from the very numbers the in-process path would have used. Only what the
findings need crosses the wire: the class map (one byte per voxel) and, per vertebra, its
mask, its soft mask (a few thousand voxels) and the classifier's probabilities; never the
five-channel float32 probability volume (20 bytes per voxel).

Numpy, scipy and light ``engine`` modules only: this runs inside Triton's Python backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.infer.base import channel_probability, sigmoid, softmax
from engine.models.contract import GRADE_CLASSES
from engine.postprocess.crops import (
    cut_crops,
    is_classified,
    probability_channel,
    soft_body_crop,
    soft_crop_bounds,
)
from engine.postprocess.levels import (
    RIB_BONE_HU,
    LabelledVertebra,
    LevelResult,
    label_levels,
)
from engine.postprocess.top_levels import TopLevelModel
from engine.serving import spec as s
from engine.spine_roi import hu_to_unit

Segment = Callable[[np.ndarray], np.ndarray]
"""Volume (D, H, W) float32 -> segmentation logits (C, D, H, W) float32."""
Classify = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Crops (N, 1, c, c, c) -> (fracture logit (N, 1), grade logits (N, G))."""
ClassifyProbabilities = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Crops (N, 1, c, c, c) -> (fracture probability (N,), grade probabilities (N, G))."""


class PipelineProtocolError(ValueError):
    """The pipeline's output tensors do not fit together (client and server code differ)."""


@dataclass
class SpineReading:
    """What inference found in one model-grid volume: all the findings are built from."""

    class_map: np.ndarray
    """(D, H, W) uint8: the argmax of the segmentation."""
    levels: LevelResult
    soft_masks: list[tuple[np.ndarray, np.ndarray]]
    """Per vertebra (order of ``levels.vertebrae``): soft body mask and its lower corner on the grid."""
    classified: np.ndarray
    """(N,) bool: whether the classifier ran on the vertebra (not on S1)."""
    fracture_probability: np.ndarray
    """(N,) float32; 0 where not classified."""
    grade_probabilities: np.ndarray
    """(N, G) float32; grade 0 certain where not classified."""


def classifier_probabilities(fracture_logit: np.ndarray, grade_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The activations the in-process backend applies: sigmoid of the fracture logit, softmax of the grades."""
    return sigmoid(fracture_logit[:, 0]), softmax(grade_logits, axis=1)


def batched_probabilities(classify: Classify, crops: np.ndarray, max_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``classify`` (logits) run on ``crops`` in runs of at most ``max_batch``, as probabilities."""
    parts = [classify(crops[start : start + max_batch]) for start in range(0, len(crops), max_batch)]
    return classifier_probabilities(
        np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])
    )


def read_spine(
    volume: np.ndarray,
    spacing_mm: np.ndarray,
    segment: Segment,
    classify: ClassifyProbabilities,
    crop_size: int,
    hu_window: tuple[float, float],
    top_model: TopLevelModel | None = None,
) -> SpineReading:
    """Segment, label, cut and classify one volume (D, H, W) float32 at ``spacing_mm``,
    normalised with ``hu_window`` (the labeller finds the ribs in it). ``top_model`` is the
    labelling's top-vertebrae cue (:mod:`engine.postprocess.top_levels`; None: without it).

    The in-process core passes its backend's ``segment`` and ``classify`` (which returns
    probabilities); the Triton pipeline model passes its BLS calls, the classifier's through
    :func:`batched_probabilities`."""
    logits = segment(volume)
    class_map = logits.argmax(axis=0).astype(np.uint8)
    # Hysteresis on the body probability (label_levels' body_probability) is not used: on 10
    # held-out studies it lowered level identification from 83.8% to 73.2% with weights v1.
    levels = label_levels(class_map, np.asarray(spacing_mm, dtype=float), volume=volume,
                          bone_level=hu_to_unit(RIB_BONE_HU, hu_window), top_model=top_model)
    n = len(levels.vertebrae)
    classified = np.array([is_classified(v.level) for v in levels.vertebrae], dtype=bool).reshape(n)
    fracture = np.zeros(n, dtype=np.float32)
    grades = np.zeros((n, len(GRADE_CLASSES)), dtype=np.float32)
    grades[~classified, 0] = 1.0  # grade 0 certain for the levels never classified (S1)
    if classified.any():
        centres = np.array([v.centroid_index for v in levels.vertebrae if is_classified(v.level)])
        p, g = classify(cut_crops(volume, centres, crop_size))
        if g.shape[1] != grades.shape[1]:
            raise PipelineProtocolError(f"the classifier returned {g.shape[1]} grades, expected {grades.shape[1]}")
        fracture[classified] = p
        grades[classified] = g
    probabilities: dict[int, np.ndarray] = {}  # only the channels that outline a vertebra, once each
    soft = []
    for v in levels.vertebrae:
        channel = probability_channel(v.level)
        if channel not in probabilities:
            probabilities[channel] = channel_probability(logits, channel)
        soft.append(soft_body_crop(v, probabilities[channel]))
    return SpineReading(class_map, levels, soft, classified, fracture, grades)


def _strings(values: list[str]) -> np.ndarray:
    return np.array([v.encode("utf-8") for v in values], dtype=np.object_)


def _flat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    """Arrays of different shapes as one flat array (C order), in turn."""
    return np.concatenate([a.ravel() for a in arrays]).astype(dtype) if arrays else np.zeros(0, dtype)


def encode(reading: SpineReading) -> dict[str, np.ndarray]:
    """The pipeline's output tensors (names and dtypes of :func:`engine.serving.spec.pipeline_spec`)."""
    vertebrae = reading.levels.vertebrae
    boxes = np.array([[b.start for b in v.box] + [b.stop for b in v.box] for v in vertebrae], dtype=np.int64)
    return {
        s.PIPE_CLASS_MAP: np.ascontiguousarray(reading.class_map, dtype=np.uint8),
        s.PIPE_LEVELS: _strings([v.level for v in vertebrae]),
        s.PIPE_CENTROIDS: np.array([v.centroid_index for v in vertebrae], dtype=np.float64).reshape(-1, 3),
        s.PIPE_BOXES: boxes.reshape(-1, 6),
        s.PIPE_RIB_BEARING: np.array([v.rib_bearing for v in vertebrae], dtype=bool),
        s.PIPE_CUT_BY_SCAN: np.array([v.cut_by_scan for v in vertebrae], dtype=bool),
        s.PIPE_LOCAL_MASKS: _flat([v.local_mask for v in vertebrae], bool),
        s.PIPE_SOFT_MASKS: _flat([soft for soft, _ in reading.soft_masks], np.float32),
        s.PIPE_CLASSIFIED: reading.classified.astype(bool),
        s.PIPE_FRACTURE: reading.fracture_probability.astype(np.float32),
        s.PIPE_GRADES: reading.grade_probabilities.astype(np.float32),
        s.PIPE_ANCHOR: _strings([reading.levels.anchor]),
        s.PIPE_NOTES: _strings(list(reading.levels.notes)),
        s.PIPE_UNNAMED: np.array([reading.levels.unnamed], dtype=np.int64),
    }


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _take(flat: np.ndarray, start: int, shape: tuple[int, ...], dtype: type, name: str) -> np.ndarray:
    size = int(np.prod(shape))
    if start + size > len(flat):
        raise PipelineProtocolError(f"vcf_pipeline's {name} hold {len(flat)} voxels, its boxes describe more")
    return np.asarray(flat[start : start + size], dtype=dtype).reshape(shape)


def decode(outputs: Mapping[str, np.ndarray]) -> SpineReading:
    """Rebuild the :class:`SpineReading` from the pipeline's output tensors."""
    missing = [t.name for t in s.pipeline_spec().outputs if t.name not in outputs]
    if missing:
        raise PipelineProtocolError(f"vcf_pipeline returned no {', '.join(missing)}")
    class_map = np.asarray(outputs[s.PIPE_CLASS_MAP], dtype=np.uint8)
    grid = tuple(int(v) for v in class_map.shape)
    names = [_text(v) for v in outputs[s.PIPE_LEVELS]]
    n = len(names)
    boxes, centroids = outputs[s.PIPE_BOXES], outputs[s.PIPE_CENTROIDS]
    per_vertebra = (centroids, boxes, outputs[s.PIPE_RIB_BEARING], outputs[s.PIPE_CUT_BY_SCAN], outputs[s.PIPE_CLASSIFIED],
                    outputs[s.PIPE_FRACTURE], outputs[s.PIPE_GRADES])
    if any(len(a) != n for a in per_vertebra):
        raise PipelineProtocolError(
            f"vcf_pipeline returned {n} levels but per-vertebra outputs of lengths {[len(a) for a in per_vertebra]}"
        )
    local_flat, soft_flat = outputs[s.PIPE_LOCAL_MASKS], outputs[s.PIPE_SOFT_MASKS]
    vertebrae, soft_masks, at_local, at_soft = [], [], 0, 0
    for name, centroid, box_row, rib, cut in zip(names, centroids, boxes, outputs[s.PIPE_RIB_BEARING],
                                                 outputs[s.PIPE_CUT_BY_SCAN]):
        box = tuple(slice(int(a), int(b)) for a, b in zip(box_row[:3], box_row[3:]))
        local_shape = tuple(int(b) - int(a) for a, b in zip(box_row[:3], box_row[3:]))
        local = _take(local_flat, at_local, local_shape, bool, "local_masks")
        at_local += local.size
        vertebra = LabelledVertebra(
            level=name, centroid_index=np.asarray(centroid, dtype=float), box=box,  # type: ignore[arg-type]
            local_mask=local, grid_shape=grid, rib_bearing=bool(rib), cut_by_scan=bool(cut),  # type: ignore[arg-type]
        )
        lo, hi = soft_crop_bounds(vertebra.box, grid)
        soft_shape = tuple(int(v) for v in hi - lo)
        soft = _take(soft_flat, at_soft, soft_shape, np.float32, "soft_masks")
        at_soft += soft.size
        vertebrae.append(vertebra)
        soft_masks.append((soft, lo))
    if at_local != len(local_flat) or at_soft != len(soft_flat):
        raise PipelineProtocolError(
            f"vcf_pipeline's masks hold {len(local_flat)} / {len(soft_flat)} voxels but its boxes "
            f"describe {at_local} / {at_soft}"
        )
    anchor = _text(outputs[s.PIPE_ANCHOR][0]) if len(outputs[s.PIPE_ANCHOR]) else "none"
    unnamed = outputs[s.PIPE_UNNAMED]
    levels = LevelResult(vertebrae=vertebrae, anchor=anchor, notes=[_text(v) for v in outputs[s.PIPE_NOTES]],
                         unnamed=int(unnamed[0]) if len(unnamed) else 0)
    return SpineReading(
        class_map=class_map,
        levels=levels,
        soft_masks=soft_masks,
        classified=np.asarray(outputs[s.PIPE_CLASSIFIED], dtype=bool),
        fracture_probability=np.asarray(outputs[s.PIPE_FRACTURE], dtype=np.float32),
        grade_probabilities=np.asarray(outputs[s.PIPE_GRADES], dtype=np.float32).reshape(n, len(GRADE_CLASSES)),
    )
