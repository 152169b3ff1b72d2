"""Training loop of the vertebra segmentation U-Net on model-grid phantom samples.

Random patches, most of them centred on the spine (the class of interest fills a few per
cent of a TAP volume), a share of them on the spine where the volume ends cranially or
caudally (the bodies a scan cuts or barely covers are the ones an under-trained network
misses, and with them the count that names every level), intensity and noise augmentation,
left-right flips (never cranio-caudal ones: level naming reads the order of the bodies),
MONAI's Dice + cross-entropy loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss

from engine.models.networks import SegmenterConfig, build_segmenter
from engine.models.training.data import Sample
from engine.models.training.loop import fit
from engine.models.training.warmstart import load_onnx_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegTrainConfig:
    steps: int = 1200
    """Optimiser steps."""
    batch: int = 2
    """Patches per step."""
    patch: tuple[int, int, int] = (96, 96, 96)
    """Patch size in model voxels (multiples of the U-Net grid)."""
    lr: float = 3e-3
    """Peak learning rate (one-cycle schedule)."""
    spine_focus: float = 0.85
    """Share of patches centred on a labelled voxel rather than anywhere."""
    edge_focus: float = 0.0
    """Share of patches centred on a labelled voxel within a quarter patch of the volume's
    superior or inferior end (so the patch holds the end and what lies beyond it)."""
    fracture_focus: float = 0.0
    """Share of draws that centre the patch on a vertebra of grade 2 or 3 (its true centroid,
    jittered like the others): a collapsed endplate and the thin disc beside it fill a few
    voxels of a patch, and most patches hold no fracture at all. A draw on a study without
    such a vertebra centres on any labelled voxel instead, so the share of patches on a
    fracture is at most this."""
    seed: int = 0
    """Seed of patch sampling, augmentation and weight initialisation."""

    def __post_init__(self) -> None:
        if self.edge_focus + self.fracture_focus > 1.0:
            raise ValueError(f"edge_focus {self.edge_focus} and fracture_focus {self.fracture_focus} "
                             "together exceed every patch")

    @property
    def elsewhere_on_spine(self) -> float:
        """Share of patches centred on any labelled voxel (``spine_focus`` after the edge and
        fracture shares)."""
        special = self.edge_focus + self.fracture_focus
        return max(0.0, min(1.0, special + self.spine_focus) - special)


def _labelled_voxel(classes: np.ndarray, rng: np.random.Generator, axis0: slice = slice(None)) -> np.ndarray | None:
    """A random labelled voxel index among the axis-0 slices ``axis0``, or None if there is none."""
    part = classes[axis0]
    coords = np.flatnonzero(part.ravel() > 0)
    if not coords.size:
        return None
    index = np.array(np.unravel_index(coords[rng.integers(coords.size)], part.shape))
    index[0] += axis0.indices(classes.shape[0])[0]
    return index


def random_patch(
    sample: Sample, patch: Sequence[int], rng: np.random.Generator, focus: float, edge: float = 0.0,
    fracture: float = 0.0,
):
    """A (patch) crop of tensor and classes; regions outside the volume read as air / background.

    With probability ``edge`` the centre is a labelled voxel within a quarter patch of the
    superior or inferior end (axis 0), so that after the jitter of at most a quarter patch the
    end lies inside the patch; else with probability ``fracture`` the centroid of a vertebra of
    grade >= 2; else with probability ``focus`` any labelled voxel; else anywhere. A sample
    without what its draw asks for falls back to any labelled voxel. With ``fracture`` 0 the
    draws are those of earlier versions, so seeded runs repeat.
    """
    shape = np.array(sample.tensor.shape)
    size = np.array(patch)
    foreground = None
    draw = rng.random()
    if draw < edge:
        first, last = sample.content_rows  # the content's ends, not the padded tensor's
        reach = max(1, int(size[0]) // 4 - 1)  # even the largest jitter away leaves the end inside
        ends = [slice(first, first + reach), slice(max(first, last - reach), last)]
        foreground = _labelled_voxel(sample.classes, rng, ends[int(rng.integers(2))])
    elif draw < edge + fracture:
        fractured = [v.centroid for v in sample.vertebrae if v.grade >= 2]
        if fractured:
            foreground = np.rint(fractured[int(rng.integers(len(fractured)))]).astype(int)
    if foreground is None and draw < edge + fracture + focus:
        foreground = _labelled_voxel(sample.classes, rng)
    centre = foreground + rng.integers(-size // 4, size // 4 + 1) if foreground is not None else rng.integers(0, shape)
    lo = centre - size // 2
    x = np.zeros(patch, dtype=np.float32)
    y = np.zeros(patch, dtype=np.int64)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(lo + size, shape)
    if np.all(src_hi > src_lo):
        dst_lo = src_lo - lo
        dst = tuple(slice(a, a + (b - c)) for a, b, c in zip(dst_lo, src_hi, src_lo))
        src = tuple(slice(a, b) for a, b in zip(src_lo, src_hi))
        x[dst] = sample.tensor[src]
        y[dst] = sample.classes[src]
    return x, y


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = x * rng.uniform(0.9, 1.1) + rng.uniform(-0.04, 0.04)
    x = x + rng.normal(0.0, rng.uniform(0.0, 0.02), size=x.shape).astype(np.float32)
    if rng.random() < 0.5:  # left-right: anatomy is (nearly) symmetric
        x, y = x[:, :, ::-1], y[:, :, ::-1]
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)


def train_segmenter(
    samples: Sequence[Sample],
    net_config: SegmenterConfig,
    config: SegTrainConfig,
    on_step: Callable[[int, float], None] | None = None,
    init_from: Path | None = None,
) -> tuple[torch.nn.Module, list[float]]:
    """Train (from scratch, or on from an exported ONNX file); returns the network (eval
    mode) and the loss of every step."""
    if not samples:
        raise ValueError("no training samples")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = build_segmenter(net_config)
    if init_from is not None:
        g = net_config.grid_multiple
        load_onnx_weights(net, init_from, torch.rand(1, 1, 2 * g, 2 * g, 2 * g))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)

    def batch_loss() -> torch.Tensor:
        xs, ys = [], []
        for _ in range(config.batch):
            sample = samples[rng.integers(len(samples))]
            x, y = augment(*random_patch(sample, config.patch, rng, config.spine_focus, config.edge_focus,
                                                  config.fracture_focus), rng)
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.stack(xs)[:, None])
        y = torch.from_numpy(np.stack(ys)[:, None])
        return loss_fn(net(x), y)

    losses = fit(net, batch_loss, steps=config.steps, lr=config.lr, name="segmenter", log=log, log_every=100,
                 on_step=on_step)
    return net, losses


@torch.no_grad()
def predict_classes(net: torch.nn.Module, tensor: np.ndarray) -> np.ndarray:
    """Class map of a whole model-grid volume (already padded to the grid multiple)."""
    logits = net(torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32))[None, None])
    return logits[0].argmax(0).numpy().astype(np.uint8)


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> list[float]:
    scores = []
    for c in range(1, n_classes):
        p, t = pred == c, truth == c
        denominator = p.sum() + t.sum()
        scores.append(float(2 * np.logical_and(p, t).sum() / denominator) if denominator else float("nan"))
    return scores
