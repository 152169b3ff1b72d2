"""Fit the labelling's top-vertebrae cue (:mod:`engine.postprocess.top_levels`) on screened phantoms.

Each phantom is screened with the shipped segmenter, exactly as ``vcfscreen screen`` does, and
the labelling's top whole vertebrae (:attr:`~engine.postprocess.levels.LevelResult.top`) are
matched to the phantom's truth by centroid (as ``evaluate`` matches them): each gives one
example, its features and the class of its true level. Spines with 11 and 13 rib pairs are
drawn on purpose, so the model learns what lies around T1 and not how many ribs follow it.

Each phantom can be rendered twice: as the phantom paints it by default, and with partial-volume
slices (:attr:`~engine.phantom.config.PhantomConfig.partial_volume_slices`: each slice averages
the anatomy over its thickness, as a scanner's does). On 2.5-3 mm slices the bone around T1
reads differently the two ways, and real scans are made the second way, so the cue learns from
both (the model card's limits say what that changed, and what it did not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.evaluate.matching import match_centroids
from engine.postprocess.top_levels import CLASSES, TopLevelModel, class_of, fit
from engine.volume import index_to_lps

SPINES = ("typical", "11_thoracic", "13_thoracic")
"""The spines the examples are drawn from: the phantom's default mix, and each rib variant forced."""


@dataclass(frozen=True)
class Example:
    seed: int
    spine: str
    level: str
    features: np.ndarray
    partial_volume: bool = False
    """Whether the phantom was rendered with partial-volume slices."""


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"1000-1009,2000"`` (ranges inclusive); '' gives none."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"seed range {part!r} is not N or N-M") from None
        if first < 0 or last < first:
            raise ValueError(f"seed range {part!r} must run from a non-negative seed upwards")
        seeds.extend(range(first, last + 1))
    return seeds


def study_examples(seed: int, spine: str, screener, partial_volume: bool = False) -> list[Example]:
    """Screen the phantom of ``seed`` (``spine``: one of :data:`SPINES`; with partial-volume
    slices when ``partial_volume``) and return its top vertebrae's examples; those matched to
    no true vertebra are left out."""
    from engine.phantom import PhantomConfig
    from engine.phantom.study import generate_study

    if spine not in SPINES:
        raise ValueError(f"spine {spine!r} is not one of {SPINES}")
    forced = {} if spine == "typical" else {"transitional": spine}
    config = PhantomConfig(partial_volume_slices=partial_volume, **forced)
    study = generate_study(seed, config)
    output = screener.screen_volume(study.volume)
    if output.levels is None or output.model_input is None or not output.levels.top:
        return []
    truth = study.truth["vertebrae"]
    centroids = np.array([index_to_lps(output.model_input.affine, body.centroid_index) for body in output.levels.top])
    matching = match_centroids(np.array([v["centroid_lps_mm"] for v in truth]).reshape(-1, 3), centroids.reshape(-1, 3))
    return [Example(seed, spine, truth[pair.truth]["level"], output.levels.top[pair.prediction].features, partial_volume)
            for pair in matching.pairs]


def _arrays(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Features and classes of the examples."""
    return np.array([e.features for e in examples]), np.array([class_of(e.level) for e in examples])


def cross_validate(examples: Sequence[Example], l2: float, folds: int = 5) -> dict:
    """Accuracy of the model fitted without each fold of studies, on that fold (both renderings
    of a phantom fall in the same fold), over all examples and per rendering when both are
    there."""
    studies = sorted({(e.spine, e.seed) for e in examples})
    fold_of = {study: i % folds for i, study in enumerate(studies)}
    x, y = _arrays(examples)
    fold = np.array([fold_of[(e.spine, e.seed)] for e in examples])
    predicted = np.zeros(len(y), dtype=int)
    for k in range(folds):
        held = fold == k
        if not held.any() or len(set(y[~held])) < len(CLASSES):
            return {}
        predicted[held] = fit(x[~held], y[~held], l2).log_probabilities(x[held]).argmax(axis=1)
    right = predicted == y
    found = {"folds": folds, "accuracy": round(float(np.mean(right)), 4),
             "per class (right / examples)": {name: f"{int(np.sum(right & (y == c)))}/{int(np.sum(y == c))}"
                                              for c, name in enumerate(CLASSES)}}
    averaged = np.array([e.partial_volume for e in examples])
    if averaged.any() and not averaged.all():
        found["per rendering (right / examples)"] = {
            name: f"{int(np.sum(right & rows))}/{int(np.sum(rows))}"
            for name, rows in (("default", ~averaged), ("partial-volume slices", averaged))}
    return found


def fit_examples(examples: Sequence[Example], l2: float, describe: Callable[[], str]) -> TopLevelModel:
    """The model fitted on all ``examples``; ``describe`` gives its source text."""
    return fit(*_arrays(examples), l2, describe())
