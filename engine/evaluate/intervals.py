"""How far a headline figure could move on another draw of studies: 95% intervals.

A figure over vertebrae is not a figure over independent trials. One misread rib count
renames every thoracic vertebra of a study, and one study's fractures share a patient, a
scan and a segmentation. Fifty studies with one such error read "98.6% of 876 vertebrae",
and a binomial interval on 876 would make that look far surer than one study in fifty is.
So the unit of chance here is the **study**:

- **Proportions** (level identification, sensitivity, PPV) get a Wilson score interval on
  the *effective* number of trials: the vertebra count divided by the design effect
  (Kish), the variance of the ratio estimate over studies against the binomial variance of
  the pooled vertebrae, floored at 1. Errors spread evenly over the studies leave it near 1;
  errors gathered in one study raise it towards that study's size. With no error at all (or
  no success) the design effect cannot be estimated, and the effective count is taken as the
  number of studies: the most the errors could be gathered. Fifty clean studies bound the
  share of studies with a misread rib count, not the share of vertebrae, so a clean run on
  50 studies cannot settle a 99% target (Wilson 50 of 50: 92.9-100%).
- **The AUC** gets a percentile interval from a study-level bootstrap (studies resampled
  with replacement, pairs kept with their study; fixed seed, so the same report prints the
  same interval). A resample with one class only is skipped.

Both are approximate: the ratio-estimator variance needs a handful of studies with the
event to be stable, and the bootstrap percentile interval is tight on small samples. They
say whether a target is met *beyond the noise of this set*, which the point estimate alone
cannot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.evaluate.metrics import auc

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261127
_Z = 1.959963984540054  # two-sided 95% normal quantile


def wilson(successes: float, trials: float, z: float = _Z) -> tuple[float, float] | None:
    """Wilson score interval of ``successes / trials``; ``trials`` may be fractional (an
    effective count). None when there are no trials."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def design_effect(successes: Sequence[float], trials: Sequence[float]) -> float:
    """Kish design effect of a pooled proportion whose trials come in clusters (studies).

    The variance of the ratio estimate sum(x) / sum(n) over k clusters, against the binomial
    variance of the pooled trials; 1 when either is zero or there are fewer than two
    clusters with trials, never below 1.
    """
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if x.shape != n.shape:
        raise ValueError(f"{x.size} success counts for {n.size} trial counts")
    keep = n > 0
    x, n = x[keep], n[keep]
    k, total = len(n), float(n.sum())
    if k < 2 or total <= 0:
        return 1.0
    p = float(x.sum()) / total
    binomial = p * (1 - p) / total
    if binomial <= 0:
        return 1.0
    clustered = k / (k - 1) * float(np.sum((x - p * n) ** 2)) / total**2
    return max(1.0, clustered / binomial)


def clustered_proportion(successes: Sequence[float], trials: Sequence[float]) -> tuple[float, float] | None:
    """95% interval of sum(successes) / sum(trials) when each entry is one study's counts."""
    total = float(np.sum(trials))
    if total <= 0:
        return None
    hits = float(np.sum(successes))
    if hits in (0.0, total):  # nothing varies: count the studies, as if every error came in one
        effective = float(np.count_nonzero(np.asarray(trials, dtype=float) > 0))
    else:
        effective = total / design_effect(successes, trials)
    return wilson(hits * effective / total, effective)


def bootstrap_auc(
    scores_by_study: Sequence[Sequence[float]],
    positive_by_study: Sequence[Sequence[bool]],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """95% percentile interval of the pooled AUC, resampling studies; None when fewer than
    two studies hold pairs or no resample has both classes."""
    if len(scores_by_study) != len(positive_by_study):
        raise ValueError(f"{len(scores_by_study)} studies of scores for {len(positive_by_study)} of labels")
    studies = [(np.asarray(s, dtype=float), np.asarray(p, dtype=bool))
               for s, p in zip(scores_by_study, positive_by_study) if len(s)]
    if len(studies) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        chosen = rng.integers(0, len(studies), size=len(studies))
        value = auc(np.concatenate([studies[i][0] for i in chosen]), np.concatenate([studies[i][1] for i in chosen]))
        if value is not None:
            values.append(value)
    if not values:
        return None
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
