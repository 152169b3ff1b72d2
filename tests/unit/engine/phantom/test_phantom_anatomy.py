"""Transitional anatomy: level names follow the true anatomy; ribs follow the thoracic count."""

from __future__ import annotations

import pytest
from phantom_configs import QUIET, tiny_config

from engine.phantom import generate_study
from engine.phantom.render import plan_study


@pytest.mark.parametrize(
    ("variant", "thoracic", "lumbar"),
    [("none", 12, 5), ("13_thoracic", 13, 5), ("11_thoracic", 11, 5), ("6_lumbar", 12, 6), ("sacralised_L5", 12, 5)],
)
def test_level_names_and_ribs_follow_the_variant(variant: str, thoracic: int, lumbar: int) -> None:
    plan = plan_study(7, tiny_config(transitional=variant))
    names = [v.level for v in plan.spine.vertebrae]
    expected = ([f"T{k}" for k in range(1, thoracic + 1)] + [f"L{k}" for k in range(1, lumbar + 1)] + ["S1"])
    assert [n for n in names if n[0] in "TL" or n == "S1"] == expected
    assert [v.level for v in plan.spine.vertebrae if v.ribs] == [f"T{k}" for k in range(1, thoracic + 1)]
    records = [c for c in plan.spine.confounders if c["type"] == "transitional"]
    if variant == "none":
        assert records == []
    else:
        assert records and records[0]["variant"] == variant


def test_thirteen_thoracic_vertebrae_reach_the_truth() -> None:
    study = generate_study(8, tiny_config(transitional="13_thoracic", partial_coverage_probability=0.0, **QUIET))
    levels = [e["level"] for e in study.truth["vertebrae"]]
    assert "T13" in levels and levels.index("T13") + 1 == levels.index("L1")
    assert levels[-1] == "S1" and "L5" in levels and "L6" not in levels
    assert study.truth["spine"]["thoracic_count"] == 13
    t13 = next(e for e in study.truth["vertebrae"] if e["level"] == "T13")
    assert t13["rib_bearing"] is True


def test_six_lumbar_vertebrae_and_a_sacralised_l5_are_recorded() -> None:
    six = generate_study(9, tiny_config(transitional="6_lumbar", partial_coverage_probability=0.0, **QUIET))
    assert [e["level"] for e in six.truth["vertebrae"]][-3:] == ["L5", "L6", "S1"]
    fused = generate_study(10, tiny_config(transitional="sacralised_L5", partial_coverage_probability=0.0, **QUIET))
    l5 = next(e for e in fused.truth["vertebrae"] if e["level"] == "L5")
    assert l5["sacralised"] is True
    assert {"type": "transitional", "variant": "sacralised_L5"}.items() <= next(
        c for c in fused.truth["confounders"] if c["type"] == "transitional").items()
    assert not any(e["sacralised"] for e in fused.truth["vertebrae"] if e["level"] != "L5")


def test_confounders_are_recorded_with_their_levels() -> None:
    config = tiny_config(sclerotic_metastasis_probability=1.0, lytic_metastasis_probability=1.0,
                         schmorl_probability=1.0, degenerative_probability=1.0, scoliosis_probability=1.0,
                         metal_probability=1.0, fracture_study_probability=0.0, partial_coverage_probability=0.0,
                         **QUIET)
    study = generate_study(12, config)
    kinds = {c["type"] for c in study.truth["confounders"]}
    assert {"sclerotic_metastasis", "lytic_metastasis", "schmorl_node", "degenerative", "scoliosis", "metal"} <= kinds
    assert study.truth["max_genant_grade"] == 0, "confounders are not fractures"
    for record in study.truth["confounders"]:
        assert isinstance(record["levels"], list)
    assert study.volume.hu.max() == 3071, "metal saturates at the top of the HU range"
