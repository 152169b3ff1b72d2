"""The classifier's training loop on tiny synthetic crops: the ordinal grade term."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.networks import ClassifierConfig
from engine.models.training.classifier import ClsTrainConfig, train_classifier
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
