"""Fracture shapes and Genant grades: the truth grade must be what the heights say."""

from __future__ import annotations

import numpy as np
import pytest
from phantom_measure import measure_heights

from engine.phantom.config import PlantedFracture
from engine.phantom.pathology import (
    GRADE_LOSS_RANGES,
    NATURAL_LOSS_MAX,
    genant_grade,
    natural_shape,
    plant_fracture,
)
from engine.phantom.spine import nominal_vertebra


@pytest.mark.parametrize(("loss", "grade"), [(0.0, 0), (0.199, 0), (0.2, 1), (0.249, 1), (0.25, 2),
                                             (0.399, 2), (0.4, 3), (0.6, 3)])
def test_genant_grade_thresholds(loss: float, grade: int) -> None:
    assert genant_grade(loss) == grade


@pytest.mark.parametrize("morphology", ["wedge", "biconcave", "crush"])
@pytest.mark.parametrize("grade", [1, 2, 3])
def test_planted_fracture_has_exactly_its_grade(morphology: str, grade: int) -> None:
    rng = np.random.default_rng(grade * 10 + len(morphology))
    for level, region, fraction in (("T7", "T", 0.5), ("L1", "L", 0.0), ("T12", "T", 1.0)):
        vertebra = nominal_vertebra(level, region, fraction, scale=rng.uniform(0.9, 1.1))
        natural_shape(rng, vertebra)
        loss = plant_fracture(rng, vertebra, morphology, grade)
        heights = vertebra.heights()
        low, high = GRADE_LOSS_RANGES[grade]
        assert low <= loss <= high
        assert genant_grade(1 - min(heights.values()) / vertebra.h0) == grade
        smallest = min(heights, key=heights.get)
        expected_smallest = {"wedge": "anterior", "biconcave": "middle"}.get(morphology)
        if expected_smallest:
            assert smallest == expected_smallest
        else:  # crush: every height lost, none keeps more than ~5 % over the smallest
            assert max(heights.values()) / min(heights.values()) < 1.06


def test_normal_vertebrae_deform_less_than_ten_percent() -> None:
    rng = np.random.default_rng(3)
    for level, region, fraction in (("T3", "T", 0.2), ("T8", "T", 0.6), ("L3", "L", 0.5), ("S1", "S", 0.0)):
        for _ in range(50):
            vertebra = nominal_vertebra(level, region, fraction, scale=1.0)
            natural_shape(rng, vertebra)
            assert vertebra.height_loss() < NATURAL_LOSS_MAX


def test_planted_loss_outside_its_grade_is_refused() -> None:
    with pytest.raises(ValueError, match="not a grade 2 loss"):
        PlantedFracture(level="L1", grade=2, height_loss=0.45)


@pytest.mark.parametrize("position", ["HFS", "FFS"])
def test_heights_measured_on_the_labels_match_truth(fracture_studies, position: str) -> None:
    study = fracture_studies[position]
    entries = {e["level"]: e for e in study.truth["vertebrae"]}
    assert set(entries) == {"T12", "L1", "L2"}
    expected = {"T12": ("wedge", 3, 0.5), "L1": ("biconcave", 2, 0.32), "L2": ("crush", 3, 0.48)}
    for level, (morphology, grade, loss) in expected.items():
        entry = entries[level]
        assert (entry["morphology"], entry["genant_grade"]) == (morphology, grade)
        assert entry["height_loss"] == pytest.approx(loss, abs=1e-3)
        measured = measure_heights(study.labels, study.volume.affine, entry)
        for name in ("anterior", "middle", "posterior"):
            assert measured[name] == pytest.approx(entry["heights_mm"][name], abs=2.0)  # ~1.5 voxels
        measured_loss = 1 - min(measured.values()) / entry["heights_mm"]["expected"]
        assert measured_loss == pytest.approx(loss, abs=0.05)
        assert genant_grade(measured_loss) == grade
    assert study.truth["max_genant_grade"] == 3
