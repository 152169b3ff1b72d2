"""Extra classifier examples: a fracture planted in the upper thoracic spine, drawn from the seed."""

from __future__ import annotations

from phantom_configs import QUIET, tiny_config

from engine.phantom import PhantomConfig, generate_study
from engine.phantom.training import UPPER_THORACIC, upper_thoracic_fracture


def test_one_upper_thoracic_fracture_drawn_from_the_seed():
    base = PhantomConfig.fast(matrix=128, fracture_study_probability=0.7)
    configs = [upper_thoracic_fracture(seed, base) for seed in range(300_000, 300_060)]
    fractures = [c.fractures for c in configs]
    assert all(len(f) == 1 and f[0].level in UPPER_THORACIC for f in fractures)
    # every level, grade and morphology is drawn, not a fixed one
    assert {f[0].level for f in fractures} == set(UPPER_THORACIC)
    assert {f[0].grade for f in fractures} == {1, 2, 3}
    assert {f[0].morphology for f in fractures} == {"wedge", "biconcave", "crush"}
    # the same seed gives the same fracture; the rest of the base config is kept, coverage whole
    assert upper_thoracic_fracture(300_007, base) == configs[7]
    assert all(c.partial_coverage_probability == 0.0 and c.matrix == 128 for c in configs)
    assert base.fractures == () and base.partial_coverage_probability > 0


def test_the_planted_fracture_is_in_the_truth():
    seed = 300_001
    config = upper_thoracic_fracture(seed, tiny_config(**QUIET))
    (planted,) = config.fractures
    truth = {v["level"]: v for v in generate_study(seed, config).truth["vertebrae"]}
    assert truth[planted.level]["genant_grade"] == planted.grade
    assert truth[planted.level]["morphology"] == planted.morphology
    assert sum(v["genant_grade"] >= 1 for v in truth.values()) == 1
