"""Quick held-out measurements of freshly trained networks, for the model card.

The full clinical evaluation (matching by centroid, level identification, per-vertebra
fracture metrics on screened studies) is ``vcfscreen evaluate``; these figures check each
network on its own: segmentation Dice per class, and the classifier on crops at the true
centroids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from engine.models.contract import SEG_CLASSES
from engine.models.training.classifier import NOT_CLASSIFIED
from engine.models.training.data import Sample
from engine.models.training.segmenter import dice_per_class, predict_classes
from engine.screen import cut_crops


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve by the rank statistic (ties count one half)."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def segmenter_metrics(net: torch.nn.Module, samples: Sequence[Sample], n_classes: int) -> dict[str, float]:
    per_class = np.array([dice_per_class(predict_classes(net, s.tensor), s.classes, n_classes) for s in samples])
    names = SEG_CLASSES[1:n_classes]
    return {f"Dice {name}": round(float(np.nanmean(per_class[:, k])), 4) for k, name in enumerate(names)}


@torch.no_grad()
def classifier_metrics(net: torch.nn.Module, samples: Sequence[Sample], crop_size: int) -> dict[str, float]:
    crops, grades = [], []
    for sample in samples:
        vertebrae = [v for v in sample.vertebrae if v.level not in NOT_CLASSIFIED]
        if vertebrae:
            crops.append(cut_crops(sample.tensor, np.array([v.centroid for v in vertebrae]), crop_size))
            grades += [v.grade for v in vertebrae]
    x = torch.from_numpy(np.concatenate(crops))
    fracture_logit, grade_logits = net(x)
    probability = torch.sigmoid(fracture_logit[:, 0]).numpy()
    predicted_grade = grade_logits.argmax(1).numpy()
    grades = np.array(grades)
    detected = probability >= 0.5
    metrics = {
        "vertebrae": int(len(grades)),
        "fractured (grade >= 1)": int((grades >= 1).sum()),
        "AUC grade >= 1": round(auc(probability, grades >= 1), 4),
        "AUC grade >= 2": round(auc(probability, grades >= 2), 4),
        "grade accuracy": round(float((predicted_grade == grades).mean()), 4),
    }
    for threshold in (1, 2):
        truth = grades >= threshold
        if truth.any():
            metrics[f"sensitivity grade >= {threshold} (p >= 0.5)"] = round(float(detected[truth].mean()), 4)
    if (~(grades >= 1)).any():
        metrics["specificity (p < 0.5 on grade 0)"] = round(float((~detected[grades == 0]).mean()), 4)
    return metrics
