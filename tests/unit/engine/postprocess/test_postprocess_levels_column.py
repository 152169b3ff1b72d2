"""Finding the bodies along the spine column: touching bodies split, a missed body counted,
off-spine components ignored, weak bodies recovered by hysteresis, unreliable ribs ignored."""

from __future__ import annotations

import numpy as np
import pytest

from engine.postprocess.levels import (
    BODY,
    DISC,
    RIB_HEAD,
    SACRUM,
    column_bodies,
    label_levels,
    local_pitch,
    prior_pitch,
    rib_block,
)

SPACING = np.array([2.0, 2.0, 2.0])
BODY_VOXELS, DISC_VOXELS = 10, 3  # 20 mm bodies, 6 mm discs: pitch 26 mm


def column(kinds: str, sacrum: bool = True, width: int = 60) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A class map, axis0 to Superior, one body per letter of ``kinds`` from the top
    ('T' rib-bearing, 'L' or 'C' rib-free); also each body's (lo, hi) rows."""
    pitch = BODY_VOXELS + DISC_VOXELS
    depth = len(kinds) * pitch + (20 if sacrum else 4) + 4
    cmap = np.zeros((depth, width, width), dtype=np.uint8)
    c = width // 2
    rows = []
    z = depth - 3
    for kind in kinds:
        cmap[z - BODY_VOXELS : z, c - 8 : c + 6, c - 6 : c + 6] = BODY
        if kind == "T":
            cmap[z - 7 : z - 3, c + 4 : c + 8, c - 12 : c - 8] = RIB_HEAD
            cmap[z - 7 : z - 3, c + 4 : c + 8, c + 8 : c + 12] = RIB_HEAD
        cmap[z - pitch : z - BODY_VOXELS, c - 8 : c + 6, c - 6 : c + 6] = DISC
        rows.append((z - BODY_VOXELS, z))
        z -= pitch
    if sacrum:
        cmap[z - 16 : z, c - 10 : c + 8, c - 8 : c + 8] = SACRUM
    return cmap, rows


def names(cmap: np.ndarray, probability: np.ndarray | None = None) -> list[str]:
    return [v.level for v in label_levels(cmap, SPACING, probability).vertebrae]


FULL = ["T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]


def test_clean_column_is_named_from_the_ribs_and_sacrum():
    cmap, _ = column("TTTTTLLLLL")
    assert names(cmap) == FULL


def test_two_touching_bodies_are_split_along_the_spine_axis():
    cmap, rows = column("TTTTTLLLLL")
    c = cmap.shape[1] // 2
    # the L2/L3 disc segmented as body: L2 and L3 are one 46 mm component
    lo = rows[7][1]
    hi = rows[6][0]
    cmap[lo:hi, c - 8 : c + 6, c - 6 : c + 6] = BODY
    result = label_levels(cmap, SPACING)
    assert [v.level for v in result.vertebrae] == FULL
    l2, l3 = (next(v for v in result.vertebrae if v.level == name) for name in ("L2", "L3"))
    assert abs(l2.centroid_index[0] - np.mean(rows[6])) <= 2.5
    assert abs(l3.centroid_index[0] - np.mean(rows[7])) <= 2.5
    assert not np.any(l2.mask & l3.mask)


def test_a_run_of_merged_upper_bodies_is_cut_into_vertebrae():
    cmap, rows = column("TTTTTLLLLL")
    c = cmap.shape[1] // 2
    cmap[rows[3][0] : rows[0][1], c - 8 : c + 6, c - 6 : c + 6] = BODY  # T8..T11 one block
    assert names(cmap) == FULL


def test_a_missed_body_is_counted_so_the_levels_below_and_above_stay_right():
    cmap, rows = column("TTTTTLLLLL")
    lo, hi = rows[7]  # L3 not segmented at all
    cmap[lo:hi][cmap[lo:hi] == BODY] = 0
    result = label_levels(cmap, SPACING)
    assert [v.level for v in result.vertebrae] == [n for n in FULL if n != "L3"]
    assert any("missed" in note for note in result.notes)


def test_a_missed_thoracic_body_keeps_the_rib_count():
    cmap, rows = column("CTTTTTTTTTTTTLLLLL", width=60)
    lo, hi = rows[4]  # T4: no body, its rib heads still there
    cmap[lo:hi][cmap[lo:hi] == BODY] = 0
    levels = names(cmap)
    assert levels[:4] == ["C7", "T1", "T2", "T3"] and "T4" not in levels
    assert levels[4:] == [f"T{i}" for i in range(5, 13)] + ["L1", "L2", "L3", "L4", "L5", "S1"]


def test_off_spine_components_are_ignored():
    cmap, _ = column("TTTTTLLLLL", width=100)
    cmap[60:80, 20:40, 2:16] = BODY  # a large false "body" far to the side
    cmap[30:34, 80:84, 85:89] = BODY  # and a speck
    result = label_levels(cmap, SPACING)
    assert [v.level for v in result.vertebrae] == FULL
    assert all(abs(v.centroid_index[2] - 50) < 5 for v in result.vertebrae)


def test_hysteresis_recovers_a_weak_body_from_the_probability():
    cmap, rows = column("TTTTTLLLLL")
    c = cmap.shape[1] // 2
    probability = np.where(cmap == BODY, 0.9, 0.02).astype(np.float32)
    lo, hi = rows[7]
    # L3: only a small core wins the argmax; the rest has a body probability of 0.4
    cmap[lo:hi][cmap[lo:hi] == BODY] = 0
    cmap[lo + 4 : lo + 6, c - 2 : c + 1, c - 2 : c + 1] = BODY
    probability[lo:hi, c - 8 : c + 6, c - 6 : c + 6] = 0.4
    probability[lo + 4 : lo + 6, c - 2 : c + 1, c - 2 : c + 1] = 0.9
    without = label_levels(cmap, SPACING)
    assert "L3" not in [v.level for v in without.vertebrae]
    with_probability = label_levels(cmap, SPACING, probability)
    l3 = next(v for v in with_probability.vertebrae if v.level == "L3")
    assert l3.local_mask.sum() == BODY_VOXELS * 14 * 12
    assert [v.level for v in with_probability.vertebrae] == FULL


def test_rib_heads_beside_lumbar_bodies_do_not_move_the_thoracic_lumbar_junction():
    cmap, rows = column("TTTTTLLLLL")
    c = cmap.shape[1] // 2
    lo, _ = rows[7]  # a few rib-head voxels beside L3 (a transverse process read as rib)
    cmap[lo + 3 : lo + 5, c + 4 : c + 6, c + 8 : c + 10] = RIB_HEAD
    assert names(cmap) == FULL


def test_rib_heads_beside_every_body_are_not_trusted():
    cmap, rows = column("TTTTTTTTTTTTLLLLL")
    c = cmap.shape[1] // 2
    for lo, hi in rows[12:]:
        cmap[lo + 3 : hi - 3, c + 4 : c + 8, c - 12 : c - 8] = RIB_HEAD
        cmap[lo + 3 : hi - 3, c + 4 : c + 8, c + 8 : c + 12] = RIB_HEAD
    result = label_levels(cmap, SPACING)
    assert result.anchor == "sacrum"  # counted up from the sacrum instead
    assert [v.level for v in result.vertebrae][-6:] == ["L1", "L2", "L3", "L4", "L5", "S1"]
    assert any("ribs not used" in note for note in result.notes)


def test_column_bodies_are_superior_first_and_disjoint():
    cmap, rows = column("TTTTTLLLLL")
    bodies, column_line, sacrum_s = column_bodies(cmap, SPACING)
    assert len(bodies) == 10 and sacrum_s is not None and column_line is not None
    z = [b.centroid[0] for b in bodies]
    assert z == sorted(z, reverse=True)
    for body, (lo, hi) in zip(bodies, rows):
        assert body.component is not None
        assert abs(body.centroid[0] - 0.5 * (lo + hi - 1)) < 1.0


@pytest.mark.parametrize(
    "scores, flags, trusted",
    [
        ([300, 300, 280, 310, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0], True),
        ([0, 300, 300, 280, 310, 0, 0], [0, 1, 1, 1, 1, 0, 0], True),
        ([300, 300, 280, 310, 20, 0, 60], [1, 1, 1, 1, 0, 0, 0], True),  # lumbar noise
        ([300, 280, 250, 310, 200, 260, 240], [1, 1, 1, 1, 1, 1, 1], True),  # all thoracic
        ([300, 100, 280, 120, 250, 90, 240], None, False),  # no clear block
        ([0, 0, 0], [0, 0, 0], False),
    ],
)
def test_rib_block(scores, flags, trusted):
    got_flags, got_trusted = rib_block(np.array(scores, dtype=float))
    assert got_trusted == trusted
    if flags is not None:
        assert got_flags.astype(int).tolist() == flags


def test_pitch_follows_the_anatomy_and_the_measured_discs():
    n = 400
    assert local_pitch(np.array([]), n)[0] == pytest.approx(prior_pitch(0.0))
    assert prior_pitch(0.0) > prior_pitch(400.0)  # lumbar pitch larger than upper thoracic
    # clear discs every 26 mm along the whole column: the pitch is measured as 26 mm
    gaps = np.arange(10.0, n, 26.0)
    pitch = local_pitch(gaps, n)
    assert np.all(np.abs(pitch[20:-20] - 26.0) < 2.5)
    # discs every 26 mm with every other one missed: still 26, not 52
    pitch = local_pitch(np.concatenate([gaps[:3], gaps[4::2]]), n)
    assert np.all(np.abs(pitch[20:-20] - 26.0) < 3.5)
