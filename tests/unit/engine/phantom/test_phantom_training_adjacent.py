"""Extra segmenter examples: two adjacent vertebrae fractured at grade 2 or 3, drawn from the seed."""

from __future__ import annotations

from phantom_configs import QUIET, tiny_config

from engine.phantom import PhantomConfig, generate_study
from engine.phantom.training import ADJACENT_LEVELS, adjacent_fractures

ORDER = [f"T{n}" for n in range(1, 13)] + [f"L{n}" for n in range(1, 6)]


def test_two_neighbours_fractured_drawn_from_the_seed():
    base = PhantomConfig.fast(matrix=128, fracture_study_probability=0.7)
    configs = [adjacent_fractures(seed, base) for seed in range(400_000, 400_080)]
    for config in configs:
        upper, lower = config.fractures
        assert ORDER.index(lower.level) == ORDER.index(upper.level) + 1  # T12 is followed by L1
        assert upper.grade in (2, 3) and lower.grade in (2, 3)
        assert config.transitional == "none" and config.partial_coverage_probability == 0.0
    assert {c.fractures[0].level for c in configs} == set(ADJACENT_LEVELS)
    assert {f.morphology for c in configs for f in c.fractures} == {"wedge", "biconcave", "crush"}
    assert adjacent_fractures(400_011, base) == configs[11]
    assert base.fractures == ()


def test_both_planted_fractures_are_in_the_truth():
    seed = 400_003
    config = adjacent_fractures(seed, tiny_config(**QUIET))
    truth = {v["level"]: v for v in generate_study(seed, config).truth["vertebrae"]}
    for planted in config.fractures:
        assert truth[planted.level]["genant_grade"] == planted.grade
    assert sum(v["genant_grade"] >= 1 for v in truth.values()) == 2
