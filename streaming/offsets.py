"""Which offsets may be committed: per partition, the end of the contiguous run of finished records.

Studies finish out of order (a small study overtakes a large one), but a committed offset
says "everything before this is done", so the worker may only commit up to the first record
of the partition that is still pending. The tracker keeps, per partition, the offsets taken
in the order they were polled (ascending) and which of them are done (their result or
dead-letter record acknowledged by the broker); :meth:`OffsetTracker.committable` returns the
offset after the last record of the finished prefix. Gaps between offsets (compacted topics,
transaction markers) are harmless: the next commit is ``last finished offset + 1``.

Each tracked record carries a token (the worker's job id). After a rebalance the same offset
can be polled again as a new job; :meth:`done` with the old job's token is then ignored, so a
late completion of abandoned work can never mark the re-delivered record as finished.

Plain data, no Kafka, no threads: the consumer loop is its only caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass
class _PartitionState:
    pending: deque[int] = field(default_factory=deque)
    """Offsets taken and not yet behind the commit point, ascending."""
    tokens: dict[int, Hashable] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    next_commit: int | None = None
    """Offset to commit (one past the finished prefix); None until something finished."""
    committed: int | None = None


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[Hashable, _PartitionState] = {}

    def add(self, partition: Hashable, offset: int, token: Hashable) -> None:
        """A record was taken from ``partition`` (offsets must arrive in ascending order)."""
        state = self._partitions.setdefault(partition, _PartitionState())
        if state.pending:
            last: int | None = state.pending[-1]
        else:
            last = None if state.next_commit is None else state.next_commit - 1
        if last is not None and offset <= last:
            raise ValueError(
                f"offset {offset} of {partition} arrived after offset {last}: records of a "
                "partition must be tracked once each, in the order they were polled"
            )
        state.pending.append(offset)
        state.tokens[offset] = token

    def done(self, partition: Hashable, offset: int, token: Hashable) -> bool:
        """Mark a record finished; False (and nothing changes) for a record no longer tracked."""
        state = self._partitions.get(partition)
        if state is None or state.tokens.get(offset) != token:
            return False
        state.finished.add(offset)
        while state.pending and state.pending[0] in state.finished:
            first = state.pending.popleft()
            state.finished.discard(first)
            del state.tokens[first]
            state.next_commit = first + 1
        return True

    def pending(self, partition: Hashable) -> int:
        """Records of ``partition`` taken and not yet behind the commit point."""
        state = self._partitions.get(partition)
        return len(state.pending) if state else 0

    def first_pending(self, partition: Hashable) -> int | None:
        """The first record of ``partition`` not behind the commit point (where to resume it), if any."""
        state = self._partitions.get(partition)
        return state.pending[0] if state and state.pending else None

    def pending_in(self, partitions: Iterable[Hashable]) -> int:
        return sum(self.pending(p) for p in partitions)

    def committable(self) -> dict[Hashable, int]:
        """Partition -> offset to commit, for partitions whose commit point moved since the last commit."""
        return {
            p: s.next_commit for p, s in self._partitions.items()
            if s.next_commit is not None and s.next_commit != s.committed
        }

    def mark_committed(self, offsets: dict[Hashable, int]) -> None:
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = offset

    def forget(self, partitions: Iterable[Hashable]) -> list[Hashable]:
        """Stop tracking ``partitions`` (revoked); returns the tokens that were still pending."""
        abandoned: list[Hashable] = []
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is not None:
                abandoned += [state.tokens[o] for o in state.pending if o not in state.finished]
        return abandoned

    @property
    def partitions(self) -> list[Hashable]:
        return list(self._partitions)
