"""The classifier's training loop on tiny synthetic crops: the ordinal grade term and tilted crops."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.networks import ClassifierConfig
from engine.models.training.classifier import (
    ClsTrainConfig,
    CropBank,
    batch_crops,
    tilt_matrix,
    train_classifier,
)
from engine.models.training.data import Sample, VertebraTruth

NET = ClassifierConfig(widths=(4, 4, 8, 8), crop_size=16)


def samples() -> list[Sample]:
    """One volume of four 'vertebrae': brighter cubes lose more of their top (grade 0..3)."""
    tensor = np.full((40, 40, 100), 0.1, dtype=np.float32)
    truths = []
    for grade in range(4):
        x = 12 + 25 * grade
        height = 10 - 2 * grade
        tensor[15 : 15 + height, 15:25, x - 5 : x + 5] = 0.5
        truths.append(VertebraTruth(f"T{grade + 5}", np.array([19.5, 19.5, x - 0.5]), grade, 0.2 * grade))
    return [Sample(seed=0, tensor=tensor, classes=np.zeros(tensor.shape, np.uint8), vertebrae=truths)]


@pytest.mark.parametrize("ordinal", [0.0, 1.0])
def test_training_runs_and_the_loss_falls(ordinal):
    _, losses = train_classifier(samples(), NET, ClsTrainConfig(steps=24, batch=8, seed=3, ordinal_weight=ordinal))
    assert len(losses) == 24 and np.all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6])


def test_the_ordinal_term_adds_the_expected_grade_error():
    # Same seed, same first batch and weights: the first loss differs by the ordinal term alone,
    # which is positive for an untrained head (its expected grade is ~1.5 for every crop).
    _, plain = train_classifier(samples(), NET, ClsTrainConfig(steps=1, batch=8, seed=5))
    _, ordinal = train_classifier(samples(), NET, ClsTrainConfig(steps=1, batch=8, seed=5, ordinal_weight=1.0))
    assert ordinal[0] - plain[0] > 0.3


def bar_sample(fill: float) -> Sample:
    """A bright bar along axis 0 through the centre of a volume of ``fill``."""
    tensor = np.full((64, 64, 64), fill, dtype=np.float32)
    tensor[12:52, 29:35, 29:35] = 1.0
    return Sample(seed=0, tensor=tensor, classes=np.zeros(tensor.shape, np.uint8),
                  vertebrae=[VertebraTruth("T5", np.array([31.5, 31.5, 31.5]), 0, 0.0)])


def spread(crop: np.ndarray) -> int:
    """How far the bright bar wanders across axis 1 from its top to its bottom (voxels)."""
    return int(np.ptp(np.argwhere(crop[0] > 0.65)[:, 1]))


def test_tilted_crops_turn_the_body_and_stay_inside_the_data():
    sample = bar_sample(0.3)
    bank = CropBank.from_samples([sample])
    rows = np.zeros(12, dtype=int)
    upright = batch_crops([sample], bank, rows, 32, np.random.default_rng(0), jitter=0.0)
    tilted = batch_crops([sample], bank, rows, 32, np.random.default_rng(0), jitter=0.0, tilt_degrees=40.0)
    assert upright.shape == tilted.shape == (12, 1, 32, 32, 32)
    # upright: the bar crosses axis 1 in its 6 voxels on every axis-0 row
    assert np.array_equal(upright[0, 0], sample.tensor[16:48, 16:48, 16:48])
    assert all(spread(c) <= 6 for c in upright)
    assert max(spread(c) for c in tilted) >= 14
    # sampled from the volume: no corner of a tilted crop reads air inside the data
    assert tilted.min() > 0.25
    # the turn is a rotation, and a zero tilt turns nothing
    turn = tilt_matrix(25.0, -8.0)
    assert np.allclose(turn @ turn.T, np.eye(3)) and np.isclose(np.linalg.det(turn), 1.0)
    assert np.array_equal(tilt_matrix(0.0, 0.0), np.eye(3))


def test_a_tilted_training_run_runs():
    _, losses = train_classifier(samples(), NET, ClsTrainConfig(steps=4, batch=8, seed=3, tilt_degrees=30.0))
    assert len(losses) == 4 and np.all(np.isfinite(losses))
