"""The error tree of vcfscreen.

Every error has a stable ``code`` (it goes into a ScreeningResult's ``reason`` and into the
dead-letter record) and a message built from the offending values. The failure of one study
is a :class:`StudyError` (typed, reported, the run goes on); anything else is a failure of the
process, which crashes and is restarted by its supervisor.
"""

from __future__ import annotations


class VcfScreenError(Exception):
    """Root of every error raised on purpose by vcfscreen."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigurationError(VcfScreenError):
    """The settings or the environment cannot work (a process failure)."""

    code = "configuration"


class StudyError(VcfScreenError):
    """One study cannot be screened; the run goes on with the others."""

    code = "study_error"
    transient = False


class NotEligibleError(StudyError):
    """A valid study that is not a screening CT (no axial thin-slice CT series, ...)."""

    code = "not_eligible"


class NoSpineError(NotEligibleError):
    """The series was read and segmented, but no vertebral column (and no sacrum) was found in it."""

    code = "no_spine"


class LevelsNotNamedError(NotEligibleError):
    """Vertebral bodies were found, but none could be given its level (neither ribs nor sacrum
    placed the column, or without the sacrum the ribs fit two placements alike). A body without
    a level cannot be reported, so screening it would say nothing about the spine: the study is
    reported as not screened rather than as negative."""

    code = "levels_not_named"


class CorruptStudyError(StudyError):
    """The bytes or the geometry of the study are broken."""

    code = "corrupt"


class UnsupportedStudyError(StudyError):
    """Valid DICOM that this version cannot read (transfer syntax, pixel format, ...)."""

    code = "unsupported"


class TransientError(StudyError):
    """A dependency failed for now (Triton unavailable, PACS 5xx, timeout); retry later."""

    code = "transient"
    transient = True
