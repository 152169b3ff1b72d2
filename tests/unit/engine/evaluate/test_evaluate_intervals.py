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


def test_no_error_falls_back_to_the_pooled_wilson_interval():
    assert design_effect([18] * 5, [18] * 5) == 1.0
    assert clustered_proportion([18] * 5, [18] * 5) == pytest.approx(wilson(90, 90))
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


@pytest.mark.parametrize(("interval", "settled"), [
    ((0.96, 0.985), True),  # missed beyond the noise
    ((0.99, 1.0), True),    # met beyond the noise
    ((0.93, 0.997), False),  # reaches across the target
    (None, False),
])
def test_a_target_is_settled_only_when_its_interval_stays_on_one_side(interval, settled):
    check = TargetCheck(figure="level_identification", label="level identification", value=0.98,
                        target=0.99, met=False, interval=interval)
    assert check.settled is settled
