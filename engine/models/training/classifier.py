"""Training loop of the fracture classifier on crops around the true vertebrae.

Crops are cut from the model-grid tensor exactly as the screening core cuts them (same
size, air outside), centred on the true centroid with a small jitter that stands in for the
segmentation's centroid error. Fractures are a few per cent of vertebrae, so each batch is
balanced between fractured and intact ones; confounders (metastases, endplate changes,
scoliosis) are among the intact ones and teach the model what not to call a fracture.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from engine.models.networks import (
    ClassifierConfig,
    VertebraClassifier,
    build_classifier,
)
from engine.models.training.data import Sample
from engine.models.training.loop import fit
from engine.screen import cut_crops

log = logging.getLogger(__name__)

NOT_CLASSIFIED = {"C1", "C2", "S1"}


@dataclass(frozen=True)
class ClsTrainConfig:
    steps: int = 1500
    """Optimiser steps."""
    batch: int = 16
    """Crops per step (half fractured, half intact when both exist)."""
    lr: float = 2e-3
    """Peak learning rate (one-cycle schedule)."""
    jitter_voxels: float = 1.5
    """Standard deviation of the crop-centre jitter in voxels."""
    seed: int = 0
    """Seed of sampling, augmentation and weight initialisation."""
    tilt_degrees: float = 0.0
    """Largest random tilt of a crop in the sagittal plane (a third of it in the coronal
    plane), in degrees; 0 keeps crops upright. The grid is axial, so a kyphotic upper
    thoracic spine or a scoliotic curve shows its bodies tilted (a development phantom's T2:
    50 degrees), which the sampled mix has too rarely for the network to learn a tilted
    fracture's shape. On the phantoms it found more upper thoracic fractures but read more
    normal bodies as grade 1; the shipped classifier is trained without it."""
    ordinal_weight: float = 0.0
    """Weight of the ordinal term: the squared distance between the grade head's expected
    grade and the true grade. Cross-entropy alone treats calling a grade 3 "1" no worse than
    calling it "2"; the term makes the head's mass gather around the true grade."""


@dataclass
class CropBank:
    """Every classifiable vertebra of the samples: where it is and what it is."""

    sample_index: np.ndarray
    centroid: np.ndarray
    grade: np.ndarray

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> CropBank:
        rows = [(i, v.centroid, v.grade) for i, s in enumerate(samples) for v in s.vertebrae if v.level not in NOT_CLASSIFIED]
        if not rows:
            raise ValueError("no classifiable vertebrae in the training samples")
        return cls(
            sample_index=np.array([r[0] for r in rows]),
            centroid=np.array([r[1] for r in rows], dtype=float),
            grade=np.array([r[2] for r in rows], dtype=int),
        )


def tilt_matrix(sagittal_degrees: float, coronal_degrees: float) -> np.ndarray:
    """Rotation of grid vectors by the two angles: in the axes-0/1 plane (sagittal), then 0/2."""
    a, b = np.radians(sagittal_degrees), np.radians(coronal_degrees)
    sagittal = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    coronal = np.array([[np.cos(b), 0.0, -np.sin(b)], [0.0, 1.0, 0.0], [np.sin(b), 0.0, np.cos(b)]])
    return coronal @ sagittal


def batch_crops(
    samples, bank: CropBank, rows: np.ndarray, size: int, rng, jitter: float, tilt_degrees: float = 0.0
) -> np.ndarray:
    """Crops of ``size`` around the chosen vertebrae, the centre jittered. Upright crops are cut
    as the screening core cuts them; tilted ones are sampled (trilinear) on a grid turned about
    the centre, from the whole volume, so their corners read data, or air beyond the volume as
    the screen's crops do."""
    crops = np.empty((len(rows), 1, size, size, size), dtype=np.float32)
    half = np.full(3, size // 2, dtype=float)
    for k, row in enumerate(rows):
        centre = bank.centroid[row] + rng.normal(0.0, jitter, size=3)
        tensor = samples[bank.sample_index[row]].tensor
        if not tilt_degrees:
            crops[k] = cut_crops(tensor, centre[None], size)[0]
            continue
        sagittal = rng.uniform(-tilt_degrees, tilt_degrees)
        turn = tilt_matrix(sagittal, rng.uniform(-tilt_degrees, tilt_degrees) / 3.0)
        crops[k, 0] = ndimage.affine_transform(tensor, turn, offset=np.rint(centre) - turn @ half,
                                               output_shape=(size,) * 3, order=1, mode="constant", cval=0.0)
    return crops


def augment(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(crops)
    crops = crops * rng.uniform(0.9, 1.1, size=(n, 1, 1, 1, 1)) + rng.uniform(-0.04, 0.04, size=(n, 1, 1, 1, 1))
    crops = crops + rng.normal(0.0, 0.015, size=crops.shape)
    flip = rng.random(n) < 0.5
    crops[flip] = crops[flip][..., ::-1]
    return np.ascontiguousarray(crops, dtype=np.float32)


def train_classifier(
    samples: Sequence[Sample],
    net_config: ClassifierConfig,
    config: ClsTrainConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[VertebraClassifier, list[float]]:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    bank = CropBank.from_samples(samples)
    fractured = np.flatnonzero(bank.grade >= 1)
    intact = np.flatnonzero(bank.grade == 0)
    log.info("classifier: %d crops (%d fractured)", len(bank.grade), len(fractured))
    net = build_classifier(net_config)

    def batch_loss() -> torch.Tensor:
        if len(fractured) and len(intact):
            half = config.batch // 2
            rows = np.concatenate([rng.choice(fractured, half), rng.choice(intact, config.batch - half)])
        else:
            rows = rng.integers(len(bank.grade), size=config.batch)
        crops = augment(batch_crops(samples, bank, rows, net_config.crop_size, rng, config.jitter_voxels,
                                    config.tilt_degrees), rng)
        grades = torch.from_numpy(bank.grade[rows])
        fracture_logit, grade_logits = net(torch.from_numpy(crops))
        loss = F.binary_cross_entropy_with_logits(fracture_logit[:, 0], (grades >= 1).float()) + F.cross_entropy(
            grade_logits, grades
        )
        if config.ordinal_weight:
            levels = torch.arange(grade_logits.shape[1], dtype=grade_logits.dtype)
            expected = (torch.softmax(grade_logits, dim=1) * levels).sum(dim=1)
            loss = loss + config.ordinal_weight * ((expected - grades.to(expected.dtype)) ** 2).mean()
        return loss

    losses = fit(net, batch_loss, steps=config.steps, lr=config.lr, name="classifier", log=log, log_every=200,
                 on_step=on_step)
    return net, losses
