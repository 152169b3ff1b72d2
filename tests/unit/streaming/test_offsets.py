"""Commit points per partition: the end of the contiguous run of finished records."""

from __future__ import annotations

import pytest

from streaming.offsets import OffsetTracker


def test_out_of_order_completion_commits_only_the_contiguous_prefix():
    t = OffsetTracker()
    for offset in range(5):
        t.add("p0", offset, token=offset)
    for offset in (3, 1, 4):
        assert t.done("p0", offset, token=offset)
    assert t.committable() == {}  # offset 0 is still running
    t.done("p0", 0, token=0)
    assert t.committable() == {"p0": 2}  # 0 and 1 finished; 2 still running
    t.mark_committed({"p0": 2})
    assert t.committable() == {}
    t.done("p0", 2, token=2)
    assert t.committable() == {"p0": 5} and t.pending("p0") == 0


def test_partitions_are_independent_and_gaps_are_harmless():
    t = OffsetTracker()
    t.add("a", 10, "x")
    t.add("a", 14, "y")  # offsets 11-13 were compacted away
    t.add("b", 0, "z")
    t.done("a", 14, "y")
    t.done("b", 0, "z")
    assert t.committable() == {"b": 1}
    t.done("a", 10, "x")
    assert t.committable() == {"a": 15, "b": 1}


def test_a_stale_completion_cannot_finish_a_redelivered_record():
    t = OffsetTracker()
    t.add("p", 0, token="old-job")
    assert t.forget(["p"]) == ["old-job"]
    t.add("p", 0, token="new-job")  # re-delivered after the rebalance
    assert not t.done("p", 0, token="old-job")
    assert t.committable() == {}
    assert t.done("p", 0, token="new-job")
    assert t.committable() == {"p": 1}


def test_records_must_arrive_in_order_once():
    t = OffsetTracker()
    t.add("p", 5, 1)
    with pytest.raises(ValueError, match="offset 5 of p arrived after offset 5"):
        t.add("p", 5, 2)
    with pytest.raises(ValueError, match="offset 3"):
        t.add("p", 3, 3)
    t.done("p", 5, 1)
    with pytest.raises(ValueError):
        t.add("p", 4, 4)
