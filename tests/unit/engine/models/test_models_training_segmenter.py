"""The segmenter's patch sampling: patches at the volume's ends, and a short training run."""

from __future__ import annotations

import numpy as np

from engine.models.networks import SegmenterConfig
from engine.models.training.data import Sample
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


def test_training_with_edge_patches_runs_and_the_loss_falls():
    net = SegmenterConfig(channels=(4, 8, 8, 16, 16))
    _, losses = train_segmenter([column()], net, SegTrainConfig(steps=30, batch=2, patch=(32, 32, 32), lr=1e-2,
                                                                edge_focus=0.5, seed=1))
    assert len(losses) == 30 and np.all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
