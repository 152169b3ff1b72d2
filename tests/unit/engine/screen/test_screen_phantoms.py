"""End to end with the shipped models: phantoms with truth, screened by the real core.

Asserts what a radiologist would check first: the levels are named right and the planted
grade-3 fractures are found at their level. The phantoms are drawn from seeds far from
the training seeds (held out).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluate.matching import match_centroids
from engine.phantom import PhantomConfig, PlantedFracture, generate_study
from engine.postprocess.levels import COUNT_AT_TOP_NOTE, UNCERTAIN_NOTE
from engine.screen import Screener
from engine.settings import Settings

pytestmark = pytest.mark.slow

CASES = [
    pytest.param(910_001, (PlantedFracture(level="L1", morphology="wedge", grade=3),), None, id="L1-wedge"),
    pytest.param(910_002, (PlantedFracture(level="T12", morphology="crush", grade=3),
                           PlantedFracture(level="T7", morphology="biconcave", grade=3)), None,
                 id="T12-crush-T7-biconcave"),
    pytest.param(910_003, (PlantedFracture(level="L2", morphology="wedge", grade=3),), "13_thoracic",
                 id="L2-wedge-13-ribs"),
]


@pytest.fixture(scope="module")
def screener():
    settings = Settings()
    if not (settings.models.dir / settings.models.segmentation_file).exists():
        pytest.fail(f"the shipped models are missing from {settings.models.dir}: run `vcfscreen train`")
    return Screener(settings)


def match_to_truth(truth: list[dict], result):
    """The result's vertebrae matched to the phantom's true ones by centroid, as `evaluate` matches."""
    return match_centroids(np.array([v["centroid_lps_mm"] for v in truth]),
                           np.array([v.centroid_lps_mm for v in result.vertebrae]))


@pytest.mark.parametrize("seed, fractures, transitional", CASES)
def test_levels_and_planted_grade3_fractures_are_found(screener, seed, fractures, transitional):
    config = PhantomConfig.fast(
        matrix=192, fractures=fractures, transitional=transitional or "none",
        sclerotic_metastasis_probability=0.0, lytic_metastasis_probability=0.0, metal_probability=0.0,
    )
    study = generate_study(seed, config)
    result = screener.screen_volume(study.volume).result
    assert result.status == "ok", result.reason

    truth = study.truth["vertebrae"]
    matching = match_to_truth(truth, result)
    named_right = [m for m in matching.pairs if result.vertebrae[m.prediction].level == truth[m.truth]["level"]]
    assert len(named_right) >= 0.9 * len(truth), (
        [v["level"] for v in truth], [v.level for v in result.vertebrae]
    )
    assert result.level_naming is not None and result.level_naming.anchor.endswith("sacrum")
    by_level = {v.level: v for v in result.vertebrae}
    for fracture in fractures:
        found = by_level.get(fracture.level)
        assert found is not None, f"{fracture.level} not found"
        assert found.genant_grade >= 2, (fracture.level, found)
    assert result.flag is True


def test_shipped_models_find_most_vertebrae_where_they_are(screener):
    """Bodies found at the right place (VerSe 20 mm criterion)."""
    study = generate_study(910_010, PhantomConfig.fast(matrix=192))
    result = screener.screen_volume(study.volume).result
    assert result.status == "ok", result.reason
    truth = study.truth["vertebrae"]
    matching = match_to_truth(truth, result)
    assert len(matching.pairs) >= 0.5 * len(truth), (len(matching.pairs), len(truth))
    assert result.pipeline_version.startswith("vcfscreen ") and "vertebra_seg" in result.pipeline_version


def test_names_the_images_cannot_verify_are_reported_so(screener):
    # The 13-rib case above: with C7 out of view the ribs fit 12 pairs as well as 13, and the
    # prior says 12 (every name one off, as before the top vertebrae were read). The names now
    # follow the bone around the top vertebrae; the result must still say the naming is in
    # doubt, so that a reader checks the count before quoting a level.
    config = PhantomConfig.fast(
        matrix=192, fractures=(PlantedFracture(level="L2", morphology="wedge", grade=3),), transitional="13_thoracic",
        sclerotic_metastasis_probability=0.0, lytic_metastasis_probability=0.0, metal_probability=0.0,
    )
    result = screener.screen_volume(generate_study(910_003, config).volume).result
    assert result.level_naming is not None
    warnings = [note for note in result.level_naming.notes
                if note.startswith("level naming uncertain") or "rib-bearing vertebrae is not seen" in note]
    assert warnings, result.level_naming
    assert "transitional anatomy read: 13 rib-bearing vertebrae (T13)" in result.level_naming.notes
    assert any("bone around the top vertebrae" in note for note in warnings), warnings
    # the kind of doubt is on the result, as the key image and the SR read it
    expected = "close call" if warnings[0].startswith("level naming uncertain") else "rib count"
    assert result.level_naming.in_doubt and result.level_naming.doubt == expected


def test_a_severe_biconcave_collapse_keeps_its_own_segment_and_the_names_above_it(screener):
    """Seed 440097 (clinical size, default config): T11 lost 56% of its middle height and the
    segmenter half filled the discs on either side. The column was once cut through T11's
    middle, half to each neighbour: T11 was lost with its fracture, and the spine was read as
    one with 11 rib pairs (reported in doubt)."""
    study = generate_study(440_097)
    truth = study.truth["vertebrae"]
    t11 = next(v for v in truth if v["level"] == "T11")
    assert (t11["genant_grade"], t11["morphology"]) == (3, "biconcave")
    result = screener.screen_volume(study.volume).result
    matching = match_to_truth(truth, result)
    found = matching.prediction_of(truth.index(t11))
    assert found is not None, "T11 not found"
    assert (result.vertebrae[found].level, result.vertebrae[found].genant_grade) == ("T11", 3)
    wrong = [(truth[m.truth]["level"], result.vertebrae[m.prediction].level) for m in matching.pairs
             if result.vertebrae[m.prediction].level != truth[m.truth]["level"]]
    assert wrong == []


def test_a_collapse_at_the_scans_lower_edge_read_as_sacrum_does_not_shift_the_names(screener):
    """Study 26 of the seed-4747 evaluate run (clinical size, default config): scanned T1 to a
    grade 3 wedge of L2 at the lower edge, where the segmenter marked bone beside L1 and L2 as
    sacrum. Taken as the sacrum, it dropped L1 and L2, and every name above was counted from it:
    none of the 14 names was right, and the fracture was lost."""
    study = generate_study(8_261_935_671_074_030_859)
    truth = study.truth["vertebrae"]
    assert [v["level"] for v in truth][-2:] == ["L1", "L2"] and truth[-1]["genant_grade"] == 3
    result = screener.screen_volume(study.volume).result
    pairs = match_to_truth(truth, result).pairs
    named = [(truth[m.truth]["level"], result.vertebrae[m.prediction].level) for m in pairs]
    assert len(named) == len(truth) and all(t == p for t, p in named), named
    l2 = next(result.vertebrae[m.prediction] for m in pairs if truth[m.truth]["level"] == "L2")
    assert l2.genant_grade == 3
    assert "S1" not in [v.level for v in result.vertebrae]


@pytest.mark.parametrize("seed, screwed", [(910_024, {"T10", "T11", "T12"}), (910_020, set())],
                         ids=["pedicle-screws-T10-T12", "hip-prosthesis"])
def test_bodies_holding_metal_are_not_measured_and_no_others(screener, seed, screwed):
    """Screws bend a body's outline; such bodies are graded by the classifier alone, with a note.
    A hip prosthesis is in the scan too but in no vertebral body."""
    study = generate_study(seed, PhantomConfig.fast(matrix=192, metal_probability=1.0))
    implant = next(c for c in study.truth["confounders"] if c["type"] == "metal")
    assert set(implant["levels"]) == screwed  # the phantom's implant is as named
    result = screener.screen_volume(study.volume).result
    assert result.status == "ok", result.reason
    truth = study.truth["vertebrae"]
    flagged = {truth[m.truth]["level"] for m in match_to_truth(truth, result).pairs
               if any("of metal or cement in the body" in note for note in result.vertebrae[m.prediction].notes)}
    assert flagged == screwed, (flagged, screwed)
    for finding in result.vertebrae:
        if any("of metal or cement" in note for note in finding.notes):
            assert finding.morphometric_grade is None and finding.heights_mm is None


def test_heights_from_the_scan_recover_the_collapse_the_mask_fills_in(screener):
    """A clinical-size phantom (0.7 mm pixels) with two planted grade-2 fractures, screened twice:
    heights between the scan's endplate edges (the default) and from the segmentation alone."""
    config = PhantomConfig(
        fractures=(PlantedFracture(level="L1", morphology="wedge", grade=2),
                   PlantedFracture(level="T8", morphology="biconcave", grade=2)),
        sclerotic_metastasis_probability=0.0, lytic_metastasis_probability=0.0, metal_probability=0.0,
    )
    study = generate_study(910_040, config)
    truth = {v["level"]: v for v in study.truth["vertebrae"]}
    mask_only = Settings()
    mask_only.grading.heights_from_image = False
    from_scan = {v.level: v for v in screener.screen_volume(study.volume).result.vertebrae}
    from_mask = {v.level: v for v in Screener(mask_only).screen_volume(study.volume).result.vertebrae}

    wedge = truth["L1"]["height_loss"]
    assert from_scan["L1"].height_loss == pytest.approx(wedge, abs=0.05)
    assert from_mask["L1"].height_loss < wedge - 0.07  # the fill-in the scan's edges undo
    assert from_scan["L1"].genant_grade == 2
    assert from_scan["T8"].height_loss > from_mask["T8"].height_loss + 0.03
    normal = [lv for lv, v in truth.items() if v["genant_grade"] == 0 and lv in from_scan
              and from_scan[lv].morphometric_grade is not None]
    errors = [abs(from_scan[lv].height_loss - truth[lv]["height_loss"]) for lv in normal]
    assert len(normal) >= 12 and np.mean(errors) <= 0.04, (len(normal), np.round(errors, 3))


def test_a_rib_count_the_top_vertebrae_read_is_not_in_doubt_unless_a_thoracic_body_collapsed(screener):
    # Seed 35200004 (default config): T1 at the top of the view and C7 out of it, so the ribs fit
    # 13 pairs as well as 12. The bone around the top vertebrae reads the usual 12 (by 7.2 nats),
    # so the count is read from the image and the names are not in doubt.
    study = generate_study(35_200_004)
    assert study.truth["spine"]["thoracic_count"] == 12 and study.truth["vertebrae"][0]["level"] == "T1"
    result = screener.screen_volume(study.volume).result
    naming = result.level_naming
    assert naming is not None and not naming.in_doubt and naming.doubt is None, naming
    assert any(note.startswith(COUNT_AT_TOP_NOTE) for note in naming.notes), naming.notes
    truth = study.truth["vertebrae"]
    pairs = match_to_truth(truth, result).pairs
    assert all(result.vertebrae[m.prediction].level == truth[m.truth]["level"] for m in pairs)
    # Seed 31300078: the same reading, but T8 is graded 3. A collapsed body the column lost would
    # hide a thirteenth rib-bearing vertebra, so the count is in doubt again, and the notes say why.
    study = generate_study(31_300_078)
    result = screener.screen_volume(study.volume).result
    naming = result.level_naming
    assert any(v.level == "T8" and v.genant_grade == 3 for v in result.vertebrae)
    assert any(note.startswith(COUNT_AT_TOP_NOTE) for note in naming.notes), naming.notes
    assert naming.in_doubt and naming.doubt == "rib count"
    assert any("T8 is collapsed" in note for note in naming.notes), naming.notes


def test_a_body_cut_in_two_puts_the_names_in_doubt(screener):
    # Seed 1646354763324270371 (default config, a held-out study): the segmentation cuts L4 in
    # two, so the column holds six bodies between T12 and the sacrum and reads six lumbar
    # vertebrae: L4 and L5 are one body, and the true L5 is named L6. The two pieces lie half
    # the usual spacing apart, which the result reports as a close call.
    study = generate_study(1_646_354_763_324_270_371)
    assert study.truth["spine"]["lumbar_count"] == 5
    result = screener.screen_volume(study.volume).result
    assert [v.level for v in result.vertebrae][-4:] == ["L4", "L5", "L6", "S1"], (
        "the segmentation no longer cuts L4 in two here: this test needs another study with a cut body")
    naming = result.level_naming
    assert naming.in_doubt and naming.doubt == "close call", naming
    assert any(note.startswith(UNCERTAIN_NOTE) and "L4 and L5" in note and "cut in two" in note
               for note in naming.notes), naming.notes


def test_the_spine_above_a_sharp_bend_is_read(screener):
    # Seed 4274725761363724744 (default config, a study of held-out set 2525): T7 and T8 are grade 3
    # wedges and the spine above them bends sharply forward. The bodies above T9 merge into one
    # component whose slabs run up to 110 mm off a cubic through the column; kept or dropped whole,
    # it was dropped with both fractures, and the study came back negative.
    study = generate_study(4_274_725_761_363_724_744)
    truth = study.truth["vertebrae"]
    fractured = [v["level"] for v in truth if v["genant_grade"] == 3]
    assert fractured == ["T7", "T8"], fractured
    result = screener.screen_volume(study.volume).result
    assert result.status == "ok", result.reason
    matching = match_to_truth(truth, result)
    found = {truth[m.truth]["level"]: result.vertebrae[m.prediction] for m in matching.pairs}
    for level in fractured:
        assert level in found, f"{level} not found: the result holds {[v.level for v in result.vertebrae]}"
        assert found[level].level == level and found[level].genant_grade == 3, found[level]
    assert result.flag is True
