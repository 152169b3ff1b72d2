"""95% intervals with the study as the unit: Wilson on an effective count, and a study bootstrap of the AUC."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluate.intervals import (
    bootstrap_auc,
    clustered_proportion,
    design_effect,
    wilson,
)
from engine.evaluate.metrics import auc
from engine.evaluate.report import TargetCheck


def test_wilson_matches_the_textbook_values():
    low, high = wilson(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.7225, abs=1e-4)  # a clean run still proves less than 100%
    assert wilson(0, 0) is None
    with pytest.raises(ValueError, match="successes out of"):
        wilson(11, 10)


def test_errors_gathered_in_one_study_widen_the_interval():
    # 50 studies of 18 vertebrae, 12 names wrong in all: spread one per study for 12 studies,
    # or all 12 in one study (a misread rib count)
    trials = [18] * 50
    spread = [17] * 12 + [18] * 38
    gathered = [6] + [18] * 49
    assert sum(spread) == sum(gathered)
    assert design_effect(spread, trials) == pytest.approx(1.0, abs=0.05)
    assert design_effect(gathered, trials) > 10
    spread_low, _ = clustered_proportion(spread, trials)
    gathered_low, _ = clustered_proportion(gathered, trials)
    pooled_low, _ = wilson(sum(spread), sum(trials))
    assert spread_low == pytest.approx(pooled_low, abs=0.002)
    assert gathered_low < spread_low - 0.03


def test_a_clean_run_counts_its_studies_not_its_vertebrae():
    assert design_effect([18] * 5, [18] * 5) == 1.0
    assert clustered_proportion([18] * 5, [18] * 5) == pytest.approx(wilson(5, 5))
    # 50 clean studies of 18 vertebrae cannot settle a 99% target; 900 independent trials would
    low, high = clustered_proportion([18] * 50, [18] * 50)
    assert high == 1.0 and low == pytest.approx(0.9287, abs=1e-4) and low < 0.99 < wilson(900, 900)[0]
    assert clustered_proportion([0] * 4, [3] * 4) == pytest.approx(wilson(0, 4))
    assert clustered_proportion([0, 0], [0, 0]) is None
    # studies without trials (no fracture in them) take no part
    assert design_effect([3, 0, 2], [4, 0, 2]) == design_effect([3, 2], [4, 2])


def test_the_auc_bootstrap_is_repeatable_and_holds_the_estimate():
    rng = np.random.default_rng(3)
    scores, positive = [], []
    for _ in range(30):
        truth = rng.random(15) < 0.1
        scores.append(np.where(truth, rng.uniform(0.4, 1.0, 15), rng.uniform(0.0, 0.6, 15)))
        positive.append(truth)
    low, high = bootstrap_auc(scores, positive)
    point = auc(np.concatenate(scores), np.concatenate(positive))
    assert low <= point <= high and high - low > 0.005
    assert bootstrap_auc(scores, positive) == (low, high)
    assert bootstrap_auc(scores[:1], positive[:1]) is None
    with pytest.raises(ValueError, match="studies of scores"):
        bootstrap_auc(scores, positive[:-1])


@pytest.mark.parametrize(("value", "interval", "settled", "verdict"), [
    (0.98, (0.96, 0.985), True, "not met"),  # missed beyond the noise
    (0.995, (0.99, 1.0), True, "met"),  # met beyond the noise
    (0.98, (0.93, 0.997), False, "not met, within noise"),  # reaches across the target
    (0.992, (0.93, 0.997), False, "met, within noise"),
    (0.992, (0.95, 0.985), True, "not met"),  # a bootstrap interval below its own estimate: its side decides
    (0.98, None, False, "not met, within noise"),
])
def test_a_target_is_settled_only_when_its_interval_stays_on_one_side(value, interval, settled, verdict):
    check = TargetCheck(figure="level_identification", label="level identification", value=value,
                        target=0.99, met=value >= 0.99, interval=interval)
    assert check.settled is settled and check.verdict == verdict
