"""A vertebra the column cut in two: two named bodies much closer than their neighbours."""

from __future__ import annotations

import numpy as np

from engine.postprocess.levels import SPLIT_RATIO, UNCERTAIN_NOTE, naming_doubt, split_doubt, split_suspects

# A held-out phantom's lumbar spine (centroids, LPS mm) whose L4 the segmentation cut in two:
# the labelling read six lumbar vertebrae, and the true L5 became L6.
CUT_L4 = [
    ("T12", (1.12, 108.44, -346.78)), ("L1", (0.51, 99.25, -368.49)), ("L2", (-0.85, 89.99, -388.14)),
    ("L3", (-1.0, 81.42, -411.42)), ("L4", (-1.74, 76.34, -436.54)), ("L5", (-0.99, 75.82, -448.41)),
    ("L6", (-2.45, 74.89, -470.35)), ("S1", (-1.6, 77.19, -498.87)),
]


def even_column(n: int, pitch: float = 26.0) -> np.ndarray:
    return np.array([[0.0, 0.0, -pitch * i] for i in range(n)])


def test_two_pieces_of_one_body_are_suspected_and_named():
    found = split_suspects(np.array([c for _, c in CUT_L4]))
    assert [i for i, _, _ in found] == [4]  # L4 and L5
    _, gap, usual = found[0]
    assert gap < SPLIT_RATIO * usual and 11 < gap < 13 and 22 < usual < 26
    notes = split_doubt(["transitional anatomy read: 6 lumbar vertebrae (L6)"], CUT_L4)
    assert notes[0].startswith("transitional anatomy")
    assert notes[1].startswith(UNCERTAIN_NOTE) and "L4 and L5 lie 12 mm apart" in notes[1]
    assert naming_doubt(notes) == "close call"


def test_the_order_of_the_findings_does_not_matter():
    assert split_doubt([], CUT_L4[::-1]) == split_doubt([], CUT_L4)


def test_an_even_column_and_a_collapsed_body_raise_no_doubt():
    column = even_column(10)
    assert split_suspects(column) == []
    # A body crushed to half its height: its centroid lies about three quarters of the pitch
    # from each neighbour, far from half.
    crushed = column.copy()
    crushed[5:, 2] += 0.45 * 26.0
    crushed[5, 2] -= 0.5 * 0.45 * 26.0
    assert split_suspects(crushed) == []
    levels = [f"T{i}" for i in range(3, 13)]
    notes = ["the number of rib-bearing vertebrae is not seen: ..."]
    assert split_doubt(notes, list(zip(levels, crushed, strict=True))) == notes


def test_the_first_and_last_bodies_are_left_out():
    # A body the scan cuts at either end has its centroid moved towards its neighbour.
    column = even_column(8)
    column[0, 2] -= 16.0
    column[-1, 2] += 16.0
    assert split_suspects(column) == []
    # The same short gap one body further in is suspected.
    inner = even_column(8)
    inner[2:, 2] += 16.0
    assert [i for i, _, _ in split_suspects(inner)] == [1]


def test_a_short_column_is_not_judged():
    assert split_suspects(even_column(3)) == []
    assert split_doubt(["x"], [("L3", (0, 0, 0)), ("L4", (0, 0, -5)), ("S1", (0, 0, -30))]) == ["x"]
