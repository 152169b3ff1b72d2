"""The segmenter's patch sampling: patches at the volume's ends, and a short training run."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.networks import SegmenterConfig
from engine.models.training.data import Sample, VertebraTruth
from engine.models.training.segmenter import (
    SegTrainConfig,
    random_patch,
    train_segmenter,
)


def column(depth: int = 120, padding: int = 8) -> Sample:
    """A column of 'bodies' along axis 0 (axis 0 runs to Superior) in soft tissue, then the
    zero padding a grid multiple adds above the content."""
    tensor = np.zeros((depth + padding, 40, 40), dtype=np.float32)
    classes = np.zeros(tensor.shape, dtype=np.uint8)
    tensor[:depth] = 0.2
    for top in range(2, depth, 12):
        tensor[top : top + 8, 15:25, 15:25] = 0.6
        classes[top : top + 8, 15:25, 15:25] = 1
    return Sample(seed=0, tensor=tensor, classes=classes, vertebrae=[])


def holds_an_end(x: np.ndarray) -> bool:
    """The patch holds a content end: a slice of tissue next to a slice of nothing (air or
    beyond the volume) along axis 0."""
    tissue = x.reshape(x.shape[0], -1).max(axis=1) > 0
    return bool(np.any(tissue[1:] != tissue[:-1]))


def test_edge_patches_hold_the_end_of_the_content_and_the_spine():
    sample, rng = column(), np.random.default_rng(4)
    for _ in range(40):
        x, y = random_patch(sample, (32, 32, 32), rng, focus=0.0, edge=1.0)
        assert holds_an_end(x), "an edge patch must reach past the first or last content slice"
        assert (y > 0).any()


def test_the_superior_end_is_the_content_end_not_the_padding():
    sample, rng = column(padding=40), np.random.default_rng(5)
    tops = 0
    for _ in range(60):
        x, _ = random_patch(sample, (32, 32, 32), rng, focus=0.0, edge=1.0)
        tissue = x.reshape(32, -1).max(axis=1) > 0
        tops += bool(tissue[0] and not tissue[-1])  # tissue below, nothing above: the top end
    # Padding of 40 slices is more than a patch: measured from the tensor's end, no patch would
    # reach the content. About half the patches go to each end.
    assert 15 <= tops <= 45


def test_without_edge_focus_few_patches_see_an_end():
    sample, rng = column(depth=400), np.random.default_rng(6)
    ends = sum(holds_an_end(random_patch(sample, (32, 32, 32), rng, focus=1.0)[0]) for _ in range(60))
    with_edge = sum(holds_an_end(random_patch(sample, (32, 32, 32), rng, focus=0.0, edge=1.0)[0]) for _ in range(60))
    assert ends < 20 and with_edge == 60


def test_fracture_patches_centre_on_a_fractured_vertebra():
    sample = column()
    # the body at rows 62-69 is grade 2 and marked brighter; the grade 1 one above draws no patch
    sample.tensor[62:70, 15:25, 15:25] = 0.9
    sample.vertebrae = [VertebraTruth("T12", np.array([65.5, 19.5, 19.5]), 2, 0.3),
                        VertebraTruth("T11", np.array([53.5, 19.5, 19.5]), 1, 0.22)]
    rng = np.random.default_rng(4)
    # the centre moves by at most a quarter patch, so a 32-voxel patch always holds that body
    fracture = [random_patch(sample, (32, 32, 32), rng, focus=0.0, fracture=1.0)[0].max() for _ in range(40)]
    anywhere = [random_patch(sample, (32, 32, 32), rng, focus=1.0)[0].max() for _ in range(40)]
    assert all(v == np.float32(0.9) for v in fracture)
    assert sum(v == np.float32(0.9) for v in anywhere) < 30
    # without a fractured vertebra the draw falls back to any labelled voxel
    sample.vertebrae = sample.vertebrae[1:]
    assert all(random_patch(sample, (32, 32, 32), rng, focus=0.0, fracture=1.0)[1].any() for _ in range(20))


def test_a_zero_fracture_share_repeats_the_draws_of_earlier_runs():
    sample = column()
    sample.vertebrae = [VertebraTruth("L1", np.array([101.5, 19.5, 19.5]), 3, 0.45)]

    def draws(**fracture):
        rng = np.random.default_rng(9)
        return [random_patch(sample, (32, 32, 32), rng, focus=0.85, edge=0.25, **fracture)[1].sum()
                for _ in range(12)]

    # the labelled voxels of the patches drawn by the code before the option existed (58c97bb)
    assert draws() == draws(fracture=0.0) == [1600, 2100, 2000, 2300, 1200, 2200, 2300, 1890, 1600, 2000, 2200, 1800]
    assert draws() != draws(fracture=0.5)
    assert SegTrainConfig(edge_focus=0.25, fracture_focus=0.2, spine_focus=0.85).elsewhere_on_spine == 0.55
    assert SegTrainConfig(edge_focus=0.25, spine_focus=0.85).elsewhere_on_spine == 0.75
    with pytest.raises(ValueError, match="together exceed every patch"):
        SegTrainConfig(edge_focus=0.5, fracture_focus=0.6)


def test_training_with_edge_patches_runs_and_the_loss_falls():
    net = SegmenterConfig(channels=(4, 8, 8, 16, 16))
    _, losses = train_segmenter([column()], net, SegTrainConfig(steps=30, batch=2, patch=(32, 32, 32), lr=1e-2,
                                                                edge_focus=0.5, seed=1))
    assert len(losses) == 30 and np.all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
