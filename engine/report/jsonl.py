"""The results file: one ScreeningResult per line, flushed as each study finishes.

A run that is interrupted (Ctrl-C, a killed job) keeps every line it wrote: each line is
written whole and flushed before the next study starts. ``-`` means standard output, so
results can be piped (``vcfscreen screen DIR --out - | jq ...``) while progress goes to
standard error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Self

from engine.results import ScreeningResult

STDOUT = "-"


class ResultWriter:
    """Writes result lines to a file (created or truncated) or to standard output."""

    def __init__(self, target: str | Path):
        self.target = str(target)
        self.lines = 0
        self._stream: IO[str] | None = None
        self._owned = False

    @property
    def to_stdout(self) -> bool:
        return self.target == STDOUT

    def open(self) -> Self:
        if self.to_stdout:
            self._stream, self._owned = sys.stdout, False
        else:
            path = Path(self.target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream, self._owned = path.open("w", encoding="utf-8"), True
        return self

    def write(self, result: ScreeningResult) -> None:
        if self._stream is None:
            raise RuntimeError("ResultWriter.write() before open()")
        self._stream.write(result.to_json_line() + "\n")
        self._stream.flush()
        self.lines += 1

    def close(self) -> None:
        if self._stream is not None and self._owned:
            self._stream.close()
        self._stream = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
