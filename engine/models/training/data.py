"""Training samples: phantom studies on the model grid, with class maps and vertebra truth.

A sample is what the screening core sees after preprocessing (the DALI tensor at the model
spacing) plus the answers: the class map (background, vertebral body, disc, sacrum, rib
head) sampled onto the same grid, and each true vertebra's level, model-grid centroid and
Genant grade. Samples are cached on disk by seed and phantom settings, so a second training
run does not regenerate its studies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import ndimage

from engine.postprocess.levels import content_rows
from engine.preprocess import ModelInput, Preprocessor, lps_to_model
from engine.volume import Volume


@dataclass
class VertebraTruth:
    level: str
    centroid: np.ndarray
    """Model-grid voxel index (axis0, axis1, axis2)."""
    grade: int
    height_loss: float


@dataclass
class Sample:
    seed: int
    tensor: np.ndarray
    """float32 (D, H, W) in [0, 1], as the models receive it."""
    classes: np.ndarray
    """uint8 (D, H, W) class indices of engine.models.contract.SEG_CLASSES."""
    vertebrae: list[VertebraTruth]

    @cached_property
    def content_rows(self) -> tuple[int, int]:
        """[first, stop) of the axis-0 rows with any content: the rows beyond are padding to
        the grid multiple, 0 everywhere."""
        return content_rows(self.tensor) or (0, int(self.tensor.shape[0]))


def labels_to_model_grid(labels: np.ndarray, volume_affine: np.ndarray, model_input: ModelInput) -> np.ndarray:
    """Nearest-neighbour sampling of a source-grid label volume at each model voxel centre."""
    model_to_source = np.linalg.inv(volume_affine) @ model_input.affine
    return ndimage.affine_transform(
        labels,
        model_to_source[:3, :3],
        offset=model_to_source[:3, 3],
        output_shape=model_input.tensor.shape,
        order=0,
        mode="constant",
        cval=0,
    ).astype(np.uint8)


def to_sample(seed: int, volume: Volume, classes: np.ndarray, truth: dict, preprocessor: Preprocessor) -> Sample:
    (model_input,) = preprocessor([volume])
    grid_classes = labels_to_model_grid(classes, volume.affine, model_input)
    vertebrae = [
        VertebraTruth(
            level=v["level"],
            centroid=lps_to_model(model_input, np.asarray(v["centroid_lps_mm"], float)),
            grade=int(v["genant_grade"]),
            height_loss=float(v.get("height_loss", 0.0)),
        )
        for v in truth["vertebrae"]
    ]
    return Sample(seed=seed, tensor=model_input.tensor.astype(np.float32), classes=grid_classes, vertebrae=vertebrae)


def _cache_key(seed: int, config_json: str, preprocess_json: str) -> str:
    digest = hashlib.sha256(f"{seed}|{config_json}|{preprocess_json}".encode()).hexdigest()[:16]
    return f"sample-{seed}-{digest}.npz"


def save_sample(sample: Sample, path: Path) -> None:
    meta = [
        {"level": v.level, "centroid": v.centroid.tolist(), "grade": v.grade, "height_loss": v.height_loss}
        for v in sample.vertebrae
    ]
    np.savez_compressed(
        path, tensor=sample.tensor.astype(np.float16), classes=sample.classes, meta=json.dumps(meta), seed=sample.seed
    )


def load_sample(path: Path) -> Sample:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return Sample(
            seed=int(data["seed"]),
            tensor=data["tensor"].astype(np.float32),
            classes=data["classes"],
            vertebrae=[
                VertebraTruth(m["level"], np.asarray(m["centroid"]), int(m["grade"]), float(m["height_loss"]))
                for m in meta
            ],
        )


def build_samples(
    seeds: Sequence[int],
    make: Callable[[int], tuple[Volume, np.ndarray, dict]],
    preprocessor: Preprocessor,
    cache_dir: Path | None,
    key_parts: tuple[str, str],
    progress: Callable[[int], None] | None = None,
) -> list[Sample]:
    """One sample per seed, from the cache when present. ``make(seed)`` returns the volume,
    its source-grid class map and its truth."""
    samples = []
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = cache_dir / _cache_key(seed, *key_parts) if cache_dir is not None else None
        if path is not None and path.exists():
            sample = load_sample(path)
        else:
            volume, classes, truth = make(seed)
            sample = to_sample(seed, volume, classes, truth, preprocessor)
            if path is not None:
                save_sample(sample, path)
        samples.append(sample)
        if progress:
            progress(1)
    return samples
