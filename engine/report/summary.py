"""The tally of a screening run: outcomes, findings, time per study, side outputs that failed."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from engine.results import ScreeningResult


@dataclass
class RunSummary:
    """Counts of one run; :meth:`add` each study's result and how long it took."""

    total: int = 0
    ok: int = 0
    not_eligible: int = 0
    error: int = 0
    flagged: int = 0
    studies_with_grade3: int = 0
    grade3_vertebrae: int = 0
    seconds: list[float] = field(default_factory=list)
    key_images_written: int = 0
    key_image_failures: int = 0
    srs_written: int = 0
    sr_failures: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    """Count per reason code (``corrupt``, ``not_eligible``...) of studies not screened."""

    def add(self, result: ScreeningResult, seconds: float) -> None:
        self.total += 1
        self.seconds.append(seconds)
        if result.status == "ok":
            self.ok += 1
        elif result.status == "not_eligible":
            self.not_eligible += 1
        else:
            self.error += 1
        if result.reason_code is not None:
            self.reasons[result.reason_code] = self.reasons.get(result.reason_code, 0) + 1
        self.flagged += int(result.flag)
        grade3 = sum(1 for v in result.vertebrae if v.genant_grade == 3)
        self.grade3_vertebrae += grade3
        self.studies_with_grade3 += int(grade3 > 0)

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) lines for a table, in reading order."""
        median = self.median_seconds
        rows = [
            ("studies", str(self.total)),
            ("ok", str(self.ok)),
            ("not eligible", str(self.not_eligible)),
            ("error", str(self.error)),
            ("flagged", str(self.flagged)),
            ("studies with grade 3", str(self.studies_with_grade3)),
            ("grade 3 vertebrae", str(self.grade3_vertebrae)),
            ("median s / study", "-" if median is None else f"{median:.2f}"),
        ]
        if self.reasons:
            rows.append(("reasons", ", ".join(f"{code} {n}" for code, n in sorted(self.reasons.items()))))
        if self.key_images_written or self.key_image_failures:
            rows.append(("key images", f"{self.key_images_written} written, {self.key_image_failures} failed"))
        if self.srs_written or self.sr_failures:
            rows.append(("DICOM SR", f"{self.srs_written} written, {self.sr_failures} failed"))
        return rows
