"""Level naming on synthetic class maps with planted (transitional) anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from engine.postprocess.levels import BODY, DISC, RIB_HEAD, SACRUM, label_levels

SPACING = np.array([2.0, 2.0, 2.0])


def spine(n_cervical: int, n_thoracic: int, n_lumbar: int, sacrum: bool = True, noise: bool = False):
    """A class map, axis0 to Superior: bodies 10 voxels tall (20 mm), discs 3 voxels."""
    bodies = n_cervical + n_thoracic + n_lumbar
    depth = bodies * 13 + (20 if sacrum else 4) + 4
    cmap = np.zeros((depth, 40, 40), dtype=np.uint8)
    z = depth - 3  # start at the top and go down (towards smaller axis0)
    kinds = ["C"] * n_cervical + ["T"] * n_thoracic + ["L"] * n_lumbar
    for kind in kinds:
        cmap[z - 10 : z, 12:26, 14:26] = BODY
        if kind == "T":
            cmap[z - 7 : z - 3, 24:28, 8:12] = RIB_HEAD
            cmap[z - 7 : z - 3, 24:28, 28:32] = RIB_HEAD
        cmap[z - 13 : z - 10, 12:26, 14:26] = DISC
        z -= 13
    if sacrum:
        cmap[z - 16 : z, 10:28, 12:28] = SACRUM
    if noise:
        cmap[2:4, 2:4, 2:4] = BODY  # a speck far from the spine
    return cmap


@pytest.mark.parametrize(
    "n_c, n_t, n_l, expected_last_thoracic, expected_last_lumbar",
    [(1, 12, 5, "T12", "L5"), (1, 13, 5, "T13", "L5"), (1, 11, 5, "T11", "L5"), (1, 12, 6, "T12", "L6")],
)
def test_transitional_anatomy_with_cervical_anchor(n_c, n_t, n_l, expected_last_thoracic, expected_last_lumbar):
    result = label_levels(spine(n_c, n_t, n_l, noise=True), SPACING)
    levels = [v.level for v in result.vertebrae]
    assert levels[0] == "C7" and levels[1] == "T1"
    thoracic = [lv for lv in levels if lv.startswith("T")]
    lumbar = [lv for lv in levels if lv.startswith("L")]
    assert thoracic[-1] == expected_last_thoracic and len(thoracic) == n_t
    assert lumbar[-1] == expected_last_lumbar and len(lumbar) == n_l
    assert levels[-1] == "S1"
    assert result.anchor == "ribs+cervical+sacrum"
    # ordered superior to inferior: axis0 decreases
    z = [v.centroid_index[0] for v in result.vertebrae]
    assert z == sorted(z, reverse=True)


def test_partial_coverage_without_cervical_counts_from_t12():
    cmap = spine(0, 5, 5)  # T8..T12 visible
    levels = [v.level for v in label_levels(cmap, SPACING).vertebrae]
    assert levels == ["T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]


def test_no_ribs_in_view_counts_up_from_the_sacrum():
    levels = [v.level for v in label_levels(spine(0, 0, 3), SPACING).vertebrae]
    assert levels == ["L3", "L4", "L5", "S1"]


def test_nothing_to_anchor_names_nothing_and_says_so():
    result = label_levels(spine(0, 0, 3, sacrum=False), SPACING)
    assert result.vertebrae == [] and result.anchor == "none"
    assert any("cannot be named" in note for note in result.notes)


def test_masks_are_disjoint_bodies():
    result = label_levels(spine(1, 12, 5), SPACING)
    total = sum(v.mask.sum() for v in result.vertebrae if v.level != "S1")
    union = np.logical_or.reduce([v.mask for v in result.vertebrae if v.level != "S1"]).sum()
    assert total == union == 18 * 10 * 14 * 12


def test_more_rib_bearing_bodies_than_any_spine_are_never_named_beyond_the_known_levels():
    result = label_levels(spine(1, 15, 3), SPACING)  # 15 "thoracic" bodies: impossible
    levels = [v.level for v in result.vertebrae]
    assert "T14" not in levels and "T15" not in levels
    assert levels[-4:] == ["L3", "L4", "L5", "S1"]  # the sacrum fixes the bottom
    assert any("disagree" in note for note in result.notes)  # and the result says it does not fit
