"""The top vertebrae's cue for where the thoracic spine begins: its features, its model, how a
naming takes it in, and the model shipped with the weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_postprocess_levels_column import SPACING, evidence, image

from engine.postprocess import top_levels
from engine.postprocess.levels import (
    COUNT_AT_TOP_NOTE,
    NO_SACRUM_TIE_NOTE,
    TIE_NATS,
    UNCERTAIN_NOTE,
    count_doubt_after_grading,
    cue_choice,
    label_levels,
    name_levels,
    naming_doubt,
    readings,
)
from engine.postprocess.top_levels import (
    ALONG_MM,
    CLASSES,
    COUNT_MARGIN,
    FEATURE_COUNT,
    LATERAL_MM,
    OVERRIDE_MARGIN,
    POSTERIOR_MM,
    TERM_CAP,
    TERM_FLOOR,
    TOP_LEVELS_FILE,
    TopLevelModel,
    cached_model,
    class_of,
    features,
    fit,
    load_model,
    model_text,
)

CERVICAL, T1, T2, LOWER = range(4)


def cell_index(along: int, posterior: int, lateral: int) -> int:
    return (along * (len(POSTERIOR_MM) - 1) + posterior) * (len(LATERAL_MM) - 1) + lateral


def test_features_are_the_log_bone_volume_per_cell_around_the_centroid_both_sides_pooled():
    # 30 points 5 mm below the centroid, 30 mm behind, 50 mm out: 10 on the left, 20 on the right.
    lateral = np.r_[np.full(10, 50.0), np.full(20, -50.0)]
    x = features(np.full(30, 95.0), np.full(30, 30.0), lateral, centroid_s=100.0, voxel_mm3=8.0)
    assert x.shape == (FEATURE_COUNT,)
    # along -5 mm: the third along cell (-10..+8); posterior 30: the fifth (20..60); lateral 50: the third (40..60)
    index = cell_index(2, 4, 2)
    assert x[index] == pytest.approx(np.log1p(30 * 8.0 / 100.0))
    assert np.count_nonzero(x) == 1
    # Bone beyond the cells (above the top edge, below the bottom one, further out) counts nowhere.
    far = features(np.array([100.0 + ALONG_MM[-1], 100.0 + ALONG_MM[0] - 1.0, 95.0]), np.array([30.0, 30.0, 30.0]),
                   np.array([50.0, 50.0, LATERAL_MM[-1] + 1.0]), centroid_s=100.0, voxel_mm3=8.0)
    assert not far.any()


def test_level_names_fall_in_the_models_classes():
    assert [class_of(name) for name in ("C6", "C7", "", "T1", "T2", "T3", "T13", "L1", "S1")] == [
        CERVICAL, CERVICAL, CERVICAL, T1, T2, LOWER, LOWER, LOWER, LOWER]


def separable(rng: np.random.Generator, per_class: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Features with one class-specific cell each, plus noise."""
    x = rng.normal(0.0, 0.3, (4 * per_class, FEATURE_COUNT)).clip(0)
    y = np.repeat(np.arange(4), per_class)
    x[np.arange(len(y)), 10 + 7 * y] += 3.0
    return x, y


def test_the_fit_tells_the_classes_apart_and_its_terms_are_bounded():
    rng = np.random.default_rng(5)
    x, y = separable(rng)
    model = fit(x, y, l2=1.0, source="test")
    assert model.class_share == pytest.approx([0.25] * 4)
    new_x, new_y = separable(np.random.default_rng(6))
    assert np.mean(model.log_probabilities(new_x).argmax(axis=1) == new_y) > 0.95
    terms = model.terms(new_x)
    assert terms.shape == (len(new_y), len(CLASSES))
    assert terms.min() >= TERM_FLOOR and terms.max() <= TERM_CAP
    # its own class gains, the others lose
    own = terms[np.arange(len(new_y)), new_y]
    assert np.median(own) > 1.0 and np.median(terms[new_y != T1, T1]) < -1.0


def test_the_fit_needs_every_class():
    x, y = separable(np.random.default_rng(5))
    with pytest.raises(ValueError, match="every class"):
        fit(x[y != T2], y[y != T2])


def test_a_model_round_trips_through_json_and_a_foreign_layout_is_refused(tmp_path):
    model = fit(*separable(np.random.default_rng(5)), source="round trip")
    path = tmp_path / TOP_LEVELS_FILE
    path.write_text(model_text(model))
    assert path.read_text().count("\n") == len(model.to_json()) + FEATURE_COUNT + 1 + 3  # a row per line
    again = load_model(path)
    assert again.source == "round trip"
    x = separable(np.random.default_rng(7))[0]
    assert again.terms(x) == pytest.approx(model.terms(x), abs=1e-4)
    other = model.to_json() | {"lateral_mm": [0.0, 50.0, 130.0]}
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="lateral_mm"):
        load_model(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the top-level model"):
        load_model(path)
    with pytest.raises(ValueError, match="weights must have shape"):
        TopLevelModel(np.zeros((3, 4)), np.full(4, 0.25))
    with pytest.raises(ValueError, match="class shares"):
        TopLevelModel(np.zeros((FEATURE_COUNT + 1, 4)), np.array([0.5, 0.5, 0.0, 0.0]))
    assert cached_model(tmp_path / "absent.json") is None


def cue(n: int, rows: dict[int, list[float]]) -> np.ndarray:
    top = np.full((n, len(CLASSES)), np.nan)
    for i, terms in rows.items():
        top[i] = terms
    return top


def test_the_top_vertebrae_settle_a_rib_count_the_ribs_cannot_see():
    # 11 rib-bearing bodies over 5 lumbar ones and the sacrum, nothing above the top one: 11
    # rib pairs from T1, or 12 from a T1 beyond the scan. The ribs fit both; the prior says 12.
    rib = evidence("T" * 11 + "L" * 5)
    names, _, notes = name_levels(rib, rib, True)
    assert names[0] == "T2" and naming_doubt(notes) is not None
    # The top body looks like T1, the next like T2: 11 rib pairs, in doubt, and said so.
    top = cue(16, {0: [TERM_FLOOR, 5.0, TERM_FLOOR, TERM_FLOOR], 1: [TERM_FLOOR, TERM_FLOOR, 2.0, TERM_FLOOR]})
    names, anchor, notes = name_levels(rib, rib, True, top=top)
    assert names[:2] == ["T1", "T2"] and names[10:12] == ["T11", "L1"] and names[-1] == "L5"
    assert anchor == "ribs+sacrum"
    assert any(note == "transitional anatomy read: 11 rib-bearing vertebrae" for note in notes)
    (decided,) = [note for note in notes if note.startswith(UNCERTAIN_NOTE)]
    assert "bone around the top vertebrae" in decided and "12 thoracic, 5 lumbar" in decided
    # A weak cue does not outweigh the prior: the 12-pair names stay.
    weak = cue(16, {0: [0.0, 1.0, 0.0, 0.0]})
    assert name_levels(rib, rib, True, top=weak)[0][0] == "T2"


def test_the_top_vertebrae_can_show_a_rib_count_the_ribs_cannot():
    # T1..T12 over 5 lumbar bodies and the sacrum, C7 out of view: the ribs fit 13 pairs (T1
    # beyond the scan) as well as 12, the prior chose 12, and the names are in doubt.
    rib = evidence("T" * 12 + "L" * 5)
    names, _, notes = name_levels(rib, rib, True)
    assert names[0] == "T1" and naming_doubt(notes) == "rib count"
    # The bone around the top bodies reads T1, T2: the 13-pair names (T2, T3) fit it worse by
    # more than the margin, so the count is read from the image and the names are not in doubt.
    top = cue(17, {0: [TERM_FLOOR, 2.0, 0.0, TERM_FLOOR], 1: [TERM_FLOOR, 0.0, 1.5, 0.0]})
    read = own_minus_rival(rib, top, "13 rib-bearing vertebrae (T13)")
    assert read >= COUNT_MARGIN
    names, anchor, notes = name_levels(rib, rib, True, top=top)
    assert names[:2] == ["T1", "T2"] and names[11:13] == ["T12", "L1"] and anchor == "ribs+sacrum"
    (said,) = [note for note in notes if note.startswith(COUNT_AT_TOP_NOTE)]
    assert "13 rib-bearing vertebrae (T13)" in said and f"better by {read:.1f} nats" in said
    assert naming_doubt(notes) is None
    # Just short of the margin: only the prior chose, as before.
    short = cue(17, {0: [TERM_FLOOR, COUNT_MARGIN - 0.01, 0.0, TERM_FLOOR]})
    assert own_minus_rival(rib, short, "13 rib-bearing vertebrae (T13)") < COUNT_MARGIN
    names, _, notes = name_levels(rib, rib, True, top=short)
    assert names[0] == "T1" and naming_doubt(notes) == "rib count"
    assert not any(note.startswith(COUNT_AT_TOP_NOTE) for note in notes)
    # T8..L5: two counts unseen (11 and 13). The cue must beat each; a cue that reads the top
    # bodies only as lower vertebrae cannot tell the counts apart, and the doubt stays.
    rib = evidence("T" * 5 + "L" * 5)
    lower = cue(10, {0: [TERM_FLOOR, TERM_FLOOR, TERM_FLOOR, 3.0]})
    assert naming_doubt(name_levels(rib, rib, True, top=lower)[2]) == "rib count"


def test_a_collapsed_thoracic_vertebra_puts_a_count_read_at_the_top_back_in_doubt():
    rib = evidence("T" * 12 + "L" * 5)
    top = cue(17, {0: [TERM_FLOOR, 2.0, 0.0, TERM_FLOOR], 1: [TERM_FLOOR, 0.0, 1.5, 0.0]})
    notes = name_levels(rib, rib, True, top=top)[2]
    assert naming_doubt(notes) is None
    # A grade 3 T6: had the column lost it (or merged it with T5), a spine of 13 rib pairs would
    # read as these 12, and every name below T6 would be one off.
    graded = count_doubt_after_grading(notes, [("T5", 0), ("T6", 3), ("L1", 0)])
    assert graded[: len(notes)] == notes and naming_doubt(graded) == "rib count"
    assert "T6 is collapsed" in graded[-1]
    assert "T6, T9 are collapsed" in count_doubt_after_grading(notes, [("T6", 2), ("T9", 3)])[-1]
    # Grade 1, or a lumbar collapse (counted from the sacrum), leaves the count as read.
    assert count_doubt_after_grading(notes, [("T6", 1), ("L1", 3), ("S1", 0)]) == notes
    # A count not read at the top gains nothing: it is in doubt already, or seen from the ribs.
    plain = name_levels(rib, rib, True)[2]
    assert count_doubt_after_grading(plain, [("T6", 3)]) == plain


def own_minus_rival(rib: np.ndarray, top: np.ndarray, anatomy: str) -> float:
    found = readings(rib, rib, True)
    rival = next(n for n in found if n.anatomy == anatomy)
    return sum(top[i, class_of(a)] - top[i, class_of(b)]
               for i, (a, b) in enumerate(zip(found[0].names, rival.names, strict=True)) if not np.isnan(top[i, 0]))


def test_a_cue_that_outweighs_the_prior_by_the_margin_moves_the_names():
    # A spine of 11 rib pairs whose T1 the scan cuts: 10 whole rib-bearing bodies over 5 lumbar
    # ones and the sacrum. The top whole body is T2 by the cue, 3.45 nats more than "lower" (what
    # the refitted cue reads on such phantoms). The prior for 12 pairs outweighs 11 by
    # log(0.88 / 0.04) = 3.09 nats, so the cue gains 0.36: enough with the margin.
    rib = evidence("T" * 10 + "L" * 5)
    found = readings(rib, rib, True)
    eleven = next(n for n in found if n.anatomy == "11 rib-bearing vertebrae")
    assert found[0].names[0] == "T3" and eleven.names[0] == "T2"
    prior_gap = found[0].score - eleven.score
    assert prior_gap == pytest.approx(np.log(0.88 / 0.04))
    top = cue(15, {0: [TERM_FLOOR, TERM_FLOOR, 3.45, 0.0]})
    assert 3.45 - prior_gap >= OVERRIDE_MARGIN
    names, _, notes = name_levels(rib, rib, True, top=top)
    assert names[:2] == ["T2", "T3"] and names[9:11] == ["T11", "L1"]
    assert naming_doubt(notes) == "close call"  # names the cue moves stay in doubt
    # Gaining less than the margin, the prior's 12 pairs stay.
    short = cue(15, {0: [TERM_FLOOR, TERM_FLOOR, prior_gap + OVERRIDE_MARGIN - 0.01, 0.0]})
    assert name_levels(rib, rib, True, top=short)[0][0] == "T3"


def test_a_c7_with_a_rib_like_process_is_read_as_cervical_when_it_looks_cervical():
    # 18 bodies, ribs beside the top 13: 13 rib pairs by the ribs (a close call).
    rib = evidence("T" * 13 + "L" * 5)
    assert name_levels(rib, rib, True)[0][0] == "T1"
    top = cue(18, {0: [4.0, TERM_FLOOR, TERM_FLOOR, TERM_FLOOR], 1: [TERM_FLOOR, 4.0, TERM_FLOOR, TERM_FLOOR]})
    names, _, notes = name_levels(rib, rib, True, top=top)
    assert names[:2] == ["C7", "T1"] and names[12] == "T12"
    assert any(note.startswith(UNCERTAIN_NOTE) for note in notes)
    assert any("disagree with the levels named at 1 vertebra" in note for note in notes)  # C7's rib-like bone


def test_without_the_sacrum_a_c7_that_looks_cervical_is_not_read_as_t1():
    # C7 to L3 of a spine with 11 rib pairs, no sacrum: T1's first rib rising into the band
    # beside C7 gives C7 rib-like evidence, so the ribs read 12 pairs from C7, one off all the way
    # down. Nothing above C7 is in view, so 13 pairs fit as well and the names are in doubt.
    rib = evidence("C" + "T" * 11 + "L" * 3)
    first = rib.copy()
    first[0] = 2.0
    names, _, notes = name_levels(rib, first, False)
    assert names[:2] == ["T1", "T2"] and naming_doubt(notes) is not None
    # The bone around the top vertebrae says C7, T1, T2: the names follow it, in doubt.
    top = cue(15, {0: [3.0, TERM_FLOOR, TERM_FLOOR, TERM_FLOOR], 1: [TERM_FLOOR, 2.0, TERM_FLOOR, TERM_FLOOR],
                   2: [TERM_FLOOR, TERM_FLOOR, 1.5, TERM_FLOOR]})
    names, anchor, notes = name_levels(rib, first, False, top=top)
    assert names[:3] == ["C7", "T1", "T2"] and names[11:] == ["T11", "L1", "L2", "L3"]
    assert anchor == "ribs+cervical"
    assert naming_doubt(notes) is not None and "transitional anatomy read: 11 rib-bearing vertebrae" in notes


def test_without_the_sacrum_the_cue_neither_moves_a_column_whose_top_is_below_t2_nor_breaks_a_tie():
    # T5 to L4, no sacrum: the last rib-bearing body places the column. A cue that reads the top
    # bodies as lower vertebrae changes nothing.
    rib = evidence("T" * 8 + "L" * 4)
    lower = cue(12, {i: [TERM_FLOOR, TERM_FLOOR, TERM_FLOOR, 1.0] for i in range(4)})
    assert name_levels(rib, rib, False, top=lower) == name_levels(rib, rib, False)
    # Six rib-bearing bodies with neither end of the thoracic spine in view: every placement fits.
    # The ribs tie and the column is left unnamed; a cue saying only "not T1 or T2" at the top
    # cannot place it either, whichever naming it starts from.
    rib = evidence("T" * 6)
    assert name_levels(rib, rib, False)[0] == [""] * 6
    top = cue(6, {0: [TERM_FLOOR, TERM_FLOOR, TERM_FLOOR, 2.0]})
    choice = cue_choice(readings(rib, rib, False), top)
    assert choice is not None and choice.margin < TIE_NATS  # the cue moves off the ribs' first, to a tie
    names, anchor, notes = name_levels(rib, rib, False, top=top)
    assert names == [""] * 6 and anchor == "none" and notes == [NO_SACRUM_TIE_NOTE]


def test_the_cue_never_chooses_a_lost_body():
    # The lost-L1 reading names the top as the 11-pair reading does (both hold 16 names); a cue
    # for those top names takes the 11-pair reading, never the lost body, which keeps its own price.
    rib = evidence("T" * 11 + "L" * 5)
    lost = [r for r in readings(rib, rib, True) if "L1 not found" in r.anatomy][0]
    favoured = {i: [TERM_FLOOR] * 4 for i in range(4)}
    for i, name in enumerate(lost.names[:4]):
        favoured[i][class_of(name)] = TERM_CAP
    names, _, notes = name_levels(rib, rib, True, top=cue(16, favoured))
    assert tuple(names[:4]) == lost.names[:4] and tuple(names) != lost.names and "L1" in names
    assert any("11 rib-bearing" in note for note in notes)


def test_the_labelling_reads_the_top_vertebrae_and_names_by_them():
    # 11 rib-bearing bodies over 5 lumbar and the sacrum, in an image.
    cmap, volume, bone = image("T" * 11 + "L" * 5)
    plain = label_levels(cmap, SPACING, volume=volume, bone_level=bone)
    assert plain.vertebrae[0].level == "T2"
    assert len(plain.top) == top_levels.TOP_BODIES
    assert all(body.features.shape == (FEATURE_COUNT,) and body.terms is None for body in plain.top)
    assert [tuple(np.round(b.centroid_index)) for b in plain.top] == [
        tuple(np.round(v.centroid_index)) for v in plain.vertebrae[:4]]
    assert all(b.features.any() for b in plain.top)  # the rib necks lie in the cells
    # A model that finds T1 in whatever it is shown names the top body T1 and reads 11 pairs.
    weights = np.zeros((FEATURE_COUNT + 1, len(CLASSES)))
    weights[-1, T1] = 20.0
    sure = TopLevelModel(weights, np.array([0.4, 0.05, 0.15, 0.4]))  # T1 rare in its training
    named = label_levels(cmap, SPACING, volume=volume, bone_level=bone, top_model=sure)
    assert [v.level for v in named.vertebrae][:2] == ["T1", "T2"]
    assert any("11 rib-bearing" in note for note in named.notes)
    assert named.in_doubt
    assert all(body.terms is not None and body.terms[T1] == pytest.approx(np.log(20)) for body in named.top)


def test_the_shipped_model_loads_and_says_what_it_was_fitted_on():
    from engine.settings import ModelSettings

    path = ModelSettings().dir / TOP_LEVELS_FILE
    assert path.is_file(), f"{path} is missing: fit it with `vcfscreen train-levels`"
    model = load_model(path)
    assert "phantoms" in model.source and "11 rib pairs" in model.source
    assert model.class_share.min() > 0.02  # every class was seen in training
