from __future__ import annotations

import numpy as np
import pytest

from engine.postprocess.grading import (
    Heights,
    genant_grade,
    grade_spine,
    own_height_loss,
)
from engine.results import LEVELS
from engine.settings import GradingSettings

SETTINGS = GradingSettings()
THORACOLUMBAR = [f"T{n}" for n in range(1, 13)] + [f"L{n}" for n in range(1, 6)]


def normal_spine(
    levels: list[str] = THORACOLUMBAR,
    thoracic_growth: float = 0.04,
    lumbar_growth: float = 0.02,
    noise: float = 0.0,
    seed: int = 0,
) -> dict[str, Heights]:
    """Posterior heights growing caudally from 14 mm, physiological anterior wedging and
    slightly concave endplates, with optional multiplicative noise per height."""
    rng = np.random.default_rng(seed)
    spine, posterior = {}, 14.0
    for level in levels:
        jitter = 1 + rng.uniform(-noise, noise, 3)
        spine[level] = Heights(posterior * 0.92 * jitter[0], posterior * 0.95 * jitter[1], posterior * jitter[2])
        posterior *= 1 + (thoracic_growth if level.startswith("T") else lumbar_growth)
    return spine


def scaled(h: Heights, anterior: float = 1.0, middle: float = 1.0, posterior: float = 1.0) -> Heights:
    return Heights(h.anterior_mm * anterior, h.middle_mm * middle, h.posterior_mm * posterior)


@pytest.mark.parametrize(
    "loss, grade",
    [(0.0, 0), (0.1999, 0), (0.20, 1), (0.2499, 1), (0.25, 2), (0.3999, 2), (0.40, 3), (0.95, 3)],
)
def test_genant_grade_at_the_thresholds(loss, grade):
    assert genant_grade(loss, SETTINGS) == grade


def test_genant_grade_follows_the_settings():
    strict = GradingSettings(grade1_height_loss=0.15, grade2_height_loss=0.22, grade3_height_loss=0.35)
    assert [genant_grade(x, strict) for x in (0.14, 0.16, 0.23, 0.36)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not a number"):
        genant_grade(float("nan"), SETTINGS)


def test_own_loss_uses_the_posterior_wall():
    assert own_height_loss(Heights(15.0, 20.0, 20.0)) == pytest.approx(0.25)
    assert own_height_loss(Heights(20.0, 12.0, 20.0)) == pytest.approx(0.40)
    assert own_height_loss(Heights(22.0, 21.0, 20.0)) == 0.0  # a reverse wedge (L5) is not a loss


@pytest.mark.parametrize("thoracic_growth", [0.03, 0.045, 0.06])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normal_spine_with_caudal_growth_stays_grade_0_everywhere(thoracic_growth, seed):
    spine = normal_spine(thoracic_growth=thoracic_growth, noise=0.04, seed=seed)
    graded = grade_spine(spine, SETTINGS)
    assert [d.grade for d in graded.values()] == [0] * len(spine)
    assert all(d.reference == "own_posterior" for d in graded.values())
    assert max(d.posterior_loss_vs_neighbours for d in graded.values()) < SETTINGS.neighbour_reference_loss
    # The two ends of the field of view are graded from one side and say so.
    assert "one side only" in " ".join(graded["T1"].notes)
    assert "one side only" in " ".join(graded["L5"].notes)
    assert not graded["T8"].notes


def test_interpolation_not_median_when_a_deformed_neighbour_is_skipped():
    """Why the interpolation matters: with 6% growth per level and T9 crushed, T8's
    references are T6, T7 above and T10, T11 below; their plain median stands about 3%
    above T8's true height, the interpolation by level reads it exactly."""
    spine = normal_spine(thoracic_growth=0.06)
    spine["T9"] = scaled(spine["T9"], 0.6, 0.6, 0.6)
    graded = grade_spine(spine, SETTINGS)
    assert abs(graded["T8"].posterior_loss_vs_neighbours) < 0.005
    plain_median = np.median([spine[lv].posterior_mm for lv in ("T6", "T7", "T10", "T11")])
    assert 1 - spine["T8"].posterior_mm / plain_median > 0.025
    assert graded["T9"].grade == 3 and graded["T8"].grade == 0


@pytest.mark.parametrize(
    "factors, loss, grade, morphology",
    [
        ({"anterior": 0.76 / 0.92}, 0.24, 1, "wedge"),
        ({"anterior": 0.70 / 0.92}, 0.30, 2, "wedge"),
        ({"anterior": 0.50 / 0.92}, 0.50, 3, "wedge"),
        ({"middle": 0.72 / 0.95}, 0.28, 2, "biconcave"),
        ({"middle": 0.55 / 0.95}, 0.45, 3, "biconcave"),
    ],
)
def test_wedge_and_biconcave_read_against_their_own_posterior_wall(factors, loss, grade, morphology):
    spine = normal_spine()
    spine["T8"] = scaled(spine["T8"], **factors)
    graded = grade_spine(spine, SETTINGS)
    t8 = graded["T8"]
    assert (t8.grade, t8.morphology, t8.reference) == (grade, morphology, "own_posterior")
    assert t8.height_loss == pytest.approx(loss, abs=1e-6)
    assert t8.expected_mm == pytest.approx(spine["T8"].posterior_mm)
    assert all(d.grade == 0 for lv, d in graded.items() if lv != "T8")


# The smallest height of a crushed body is its (physiologically wedged, 0.92) anterior
# wall: a collapse to 0.83 is a loss of 1 - 0.83 * 0.92 = 24%, grade 1.
@pytest.mark.parametrize("collapse, grade", [(0.83, 1), (0.72, 2), (0.55, 3)])
def test_crush_is_found_only_through_the_neighbours(collapse, grade):
    spine = normal_spine(noise=0.02, seed=4)
    intact = spine["T12"]
    spine["T12"] = scaled(intact, collapse, collapse, collapse)
    assert own_height_loss(spine["T12"]) < SETTINGS.grade1_height_loss  # its own ratios look normal
    graded = grade_spine(spine, SETTINGS)
    t12 = graded["T12"]
    assert (t12.grade, t12.morphology, t12.reference) == (grade, "crush", "neighbours")
    expected_loss = 1 - spine["T12"].anterior_mm / intact.posterior_mm
    assert t12.height_loss == pytest.approx(expected_loss, abs=0.03)
    assert all(d.grade == 0 for lv, d in graded.items() if lv != "T12")


def test_crush_with_a_wedge_takes_the_larger_loss_from_the_neighbours():
    spine = normal_spine()
    intact = spine["L1"].posterior_mm
    spine["L1"] = Heights(0.50 * intact, 0.70 * intact, 0.78 * intact)
    l1 = grade_spine(spine, SETTINGS)["L1"]
    assert l1.reference == "neighbours" and l1.morphology == "wedge"
    assert l1.height_loss == pytest.approx(0.50, abs=0.02)  # own ratio alone would say 0.36
    assert l1.grade == 3


def test_two_adjacent_crushes_are_both_found():
    spine = normal_spine()
    for level in ("T12", "L1"):
        spine[level] = scaled(spine[level], 0.68, 0.68, 0.68)
    graded = grade_spine(spine, SETTINGS)
    assert [graded[lv].grade for lv in ("T11", "T12", "L1", "L2")] == [0, 2, 2, 0]
    assert graded["T12"].morphology == graded["L1"].morphology == "crush"


def test_deformed_neighbours_are_not_references():
    spine = normal_spine()
    spine["T7"] = scaled(spine["T7"], anterior=0.5)      # wedge above
    spine["T9"] = scaled(spine["T9"], 0.6, 0.6, 0.6)     # crush below
    graded = grade_spine(spine, SETTINGS)
    assert graded["T8"].grade == 0
    assert graded["T8"].posterior_loss_vs_neighbours == pytest.approx(0.0, abs=0.02)
    assert (graded["T7"].grade, graded["T9"].grade) == (3, 3)


def test_a_tall_outlier_neighbour_does_not_make_a_normal_vertebra_crushed():
    spine = normal_spine()
    spine["L2"] = scaled(spine["L2"], 1.6, 1.6, 1.6)  # e.g. a mask merged with its disc
    graded = grade_spine(spine, SETTINGS)
    assert all(d.grade == 0 for d in graded.values())


def test_crush_of_an_edge_vertebra_is_found_from_one_side():
    spine = normal_spine()
    spine["L5"] = scaled(spine["L5"], 0.68, 0.68, 0.68)
    l5 = grade_spine(spine, SETTINGS)["L5"]
    assert (l5.grade, l5.morphology) == (2, "crush")
    assert any("one side only" in note for note in l5.notes)
    top = normal_spine()
    top["T1"] = scaled(top["T1"], 0.68, 0.68, 0.68)
    assert grade_spine(top, SETTINGS)["T1"].grade == 2


def test_gaps_in_the_labels_limit_the_neighbours_to_three_levels():
    spine = {lv: h for lv, h in normal_spine().items() if lv in ("T4", "T9", "T10")}
    graded = grade_spine(spine, SETTINGS)
    assert "cannot be detected" in graded["T4"].notes[0]
    assert graded["T4"].posterior_loss_vs_neighbours is None
    assert graded["T9"].posterior_loss_vs_neighbours is not None


def test_single_vertebra_is_graded_on_its_own_ratios():
    graded = grade_spine({"L2": Heights(14.0, 24.0, 25.0)}, SETTINGS)  # 44% loss
    assert (graded["L2"].grade, graded["L2"].morphology) == (3, "wedge")
    assert "cannot be detected" in graded["L2"].notes[0]


def test_atypical_levels_are_not_graded_nor_references():
    spine = normal_spine(levels=["C2", "C3", "C4", "C5"] + [f"L{n}" for n in range(1, 6)] + ["S1"])
    spine["C2"] = Heights(5.0, 30.0, 30.0)   # the dens makes the "body" look wedged
    spine["S1"] = Heights(60.0, 60.0, 60.0)  # the sacrum is no reference for L5
    spine["L5"] = scaled(spine["L5"], 0.7, 0.7, 0.7)
    graded = grade_spine(spine, SETTINGS)
    assert graded["C2"].grade == 0 and graded["C2"].reference == "not_graded"
    assert graded["S1"].reference == "not_graded"
    assert graded["L5"].grade == 2
    assert "one side only" in " ".join(graded["L5"].notes)


def test_t13_variant_and_usual_spine_both_read_normal():
    usual = normal_spine(levels=[f"T{n}" for n in range(8, 13)] + ["L1", "L2", "L3"])
    variant = normal_spine(levels=[f"T{n}" for n in range(8, 14)] + ["L1", "L2", "L3"])
    for spine in (usual, variant):
        graded = grade_spine(spine, SETTINGS)
        assert all(d.grade == 0 for d in graded.values())
        assert abs(graded["L1"].posterior_loss_vs_neighbours) < 0.02


def test_bad_heights_are_refused_naming_the_level():
    with pytest.raises(ValueError, match="T5: heights"):
        grade_spine({"T5": Heights(10.0, 10.0, 0.0)}, SETTINGS)
    with pytest.raises(ValueError, match="T5: heights"):
        grade_spine({"T5": Heights(float("nan"), 10.0, 12.0)}, SETTINGS)
    with pytest.raises(ValueError, match="unknown vertebral level"):
        grade_spine({"T14": Heights(10.0, 10.0, 10.0)}, SETTINGS)


def test_levels_of_the_result_are_sorted_cranial_to_caudal():
    spine = normal_spine()
    shuffled = dict(reversed(list(spine.items())))
    assert list(grade_spine(shuffled, SETTINGS)) == sorted(spine, key=LEVELS.index)
