"""ScreeningResult: what vcfscreen says about one study (a contract relied on by outside checks).

One JSON object per study, one line per object in a ``.jsonl`` file or one Kafka record on
``ct.vcf.results``. The required fields and their meaning are fixed by the architecture
contract; the optional per-vertebra fields keep both sources of a grade (morphometry and
classifier) so a radiologist can see why a vertebra was graded as it was, and the optional
``level_naming`` says what the level names were counted from and when they are in doubt.

Rules the model enforces, so that no producer can emit an inconsistent line:

- ``status == "ok"`` has ``reason is None``; ``not_eligible`` and ``error`` carry a reason
  written ``"<code>: <message>"`` (the code of the :mod:`engine.errors` class that stopped the
  study, e.g. ``"corrupt: slice 12 has no pixel data"``) and no findings.
- ``max_genant_grade`` is the largest grade of the vertebrae (0 when there are none) and
  ``flag`` is ``max_genant_grade >= flag_min_grade``; build results with
  :meth:`ScreeningResult.from_findings` rather than filling these by hand.
- Every float is finite (no NaN or infinity can reach the JSON), probabilities and height
  losses lie in [0, 1], levels come from :data:`LEVELS` and appear at most once.

Floats are rounded when the model is built (0.01 mm, 0.0001 for fractions, 0.01 ms), so a
line read back with :meth:`ScreeningResult.from_json` is equal to the object that wrote it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine import __version__
from engine.errors import NotEligibleError, VcfScreenError
from engine.settings import GradingSettings

SCHEMA_VERSION = "1.0"

LEVELS: tuple[str, ...] = (
    *(f"C{n}" for n in range(1, 8)),
    *(f"T{n}" for n in range(1, 14)),
    *(f"L{n}" for n in range(1, 7)),
    "S1",
)
"""Every vertebral level vcfscreen can name, cranial to caudal (T13 and L6 are variants)."""

_LEVEL_INDEX = {level: index for index, level in enumerate(LEVELS)}
_REASON = re.compile(r"^[a-z][a-z0-9_]*: \S")

Status = Literal["ok", "not_eligible", "error"]
Morphology = Literal["wedge", "biconcave", "crush", "none"]
NamingDoubt = Literal["close call", "rib count"]
Grade = Annotated[int, Field(ge=0, le=3)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Millimetres = Annotated[float, Field(ge=0.0)]


def reason_code(reason: str | None) -> str | None:
    """The code part of a result's ``reason`` (``"corrupt"`` of ``"corrupt: slice 12 ..."``)."""
    return None if reason is None else reason.split(":", 1)[0]


def level_index(level: str) -> int:
    """Position of ``level`` in :data:`LEVELS` (C1 is 0, S1 is the last)."""
    try:
        return _LEVEL_INDEX[level]
    except KeyError:
        raise ValueError(
            f"unknown vertebral level {level!r}; known levels are {LEVELS[0]}..{LEVELS[-1]} "
            f"({', '.join(LEVELS)})"
        ) from None


def pipeline_version(model_versions: Mapping[str, int | str] | None = None) -> str:
    """``"vcfscreen 0.1.0; vertebra_seg 1; vertebra_cls 1"``: the code and model versions."""
    parts = [f"vcfscreen {__version__}"]
    parts += [f"{name} {version}" for name, version in (model_versions or {}).items()]
    return "; ".join(parts)


class _Strict(BaseModel):
    # allow_inf_nan=False: NaN and infinity are refused at construction, so never serialised.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HeightsMm(_Strict):
    """Vertebral-body heights measured along the local spine axis, millimetres."""

    anterior: Millimetres
    middle: Millimetres
    posterior: Millimetres
    expected: Millimetres | None = None
    """Height the body would have intact (own posterior wall or interpolated neighbours)."""

    @field_validator("anterior", "middle", "posterior", "expected")
    @classmethod
    def _round(cls, value: float | None) -> float | None:
        return None if value is None else round(value, 2)


class VertebraFinding(_Strict):
    """One vertebra: where it is, and how fractured it looks."""

    level: str
    centroid_lps_mm: tuple[float, float, float]
    """Centre of the vertebral body in DICOM patient coordinates (LPS, millimetres)."""
    fracture_probability: Fraction
    genant_grade: Grade
    height_loss: Fraction
    """1 - smallest height / expected height, from the morphometry (0 when not measured)."""
    morphometric_grade: Grade | None = None
    """Grade from the height loss alone; None when the body could not be measured."""
    classifier_grade: Grade | None = None
    """Most likely grade of the classifier; None when no classifier ran."""
    classifier_probability: Fraction | None = None
    """The classifier's own fracture probability, before fusion."""
    heights_mm: HeightsMm | None = None
    morphology: Morphology = "none"
    decided_by: str | None = None
    """Which branch of the fusion rule set the grade (see engine.postprocess.fusion)."""
    notes: tuple[str, ...] = ()
    """Short remarks for the reader: edge of the field of view, unmeasurable body, ..."""

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level_index(value)
        return value

    @field_validator("centroid_lps_mm")
    @classmethod
    def _round_centroid(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        return tuple(round(float(c), 2) for c in value)  # type: ignore[return-value]

    @field_validator("fracture_probability", "height_loss", "classifier_probability")
    @classmethod
    def _round_fraction(cls, value: float | None) -> float | None:
        return None if value is None else round(value, 4)


class LevelNaming(_Strict):
    """How the vertebrae were named: what the count rests on, and what a reader should know
    about it (see :mod:`engine.postprocess.levels`)."""

    anchor: str = Field(min_length=1)
    """What the names were counted from, joined by '+': ``ribs``, ``cervical`` (a vertebra above
    the first rib-bearing one is in view), ``sacrum``; ``none`` when nothing placed them."""
    notes: tuple[str, ...] = ()
    """A close call between two namings, transitional anatomy read, a rib count the images do
    not show, bodies the segmentation missed but the count includes, ribs that disagree."""
    in_doubt: bool = False
    """Another naming fits nearly as well (any name may be one off), or only the usual anatomy
    chose the rib count (the cervical and thoracic names may be): check the count before quoting
    a level."""
    doubt: NamingDoubt | None = None
    """Which doubt, when ``in_doubt``: ``close call`` (another naming fits nearly as well: every
    name may be one off) or ``rib count`` (the images do not show the number of rib-bearing
    vertebrae: the cervical and thoracic names may be one off, the lumbar ones stand). A result
    that says ``in_doubt`` without it (written before this field existed) reads as a close call,
    the wider doubt."""
    unnamed_bodies: int = Field(default=0, ge=0)
    """Vertebral bodies the segmentation found but could give no level (above or beyond the
    named ones): they are not among the vertebrae, and a fracture in them is not reported. A
    study where no body at all is named is ``not_eligible`` (``levels_not_named``) instead."""

    @model_validator(mode="before")
    @classmethod
    def _fill_doubt_or_flag(cls, data):
        # the one missing from the input follows the other: an older result says only
        # in_doubt (read as the wider doubt), a kind alone implies the flag
        if isinstance(data, dict):
            if "doubt" not in data and data.get("in_doubt") is True:
                return {**data, "doubt": "close call"}
            if data.get("doubt") is not None and "in_doubt" not in data:
                return {**data, "in_doubt": True}
        return data

    @model_validator(mode="after")
    def _doubt_and_flag_agree(self) -> LevelNaming:
        if self.doubt is not None and not self.in_doubt:
            raise ValueError(f"level naming doubt {self.doubt!r} given with in_doubt false")
        if self.in_doubt and self.doubt is None:
            raise ValueError("level naming in_doubt true needs its kind (doubt: 'close call' or 'rib count')")
        return self


class ScreeningResult(_Strict):
    """The screening outcome of one study."""

    schema_version: str = SCHEMA_VERSION
    study_instance_uid: str = Field(min_length=1)
    series_instance_uid: str | None = None
    """The series screened; None when no series was chosen."""
    status: Status
    reason: str | None = None
    """``"<code>: <message>"`` for not_eligible and error; None when ok."""
    pipeline_version: str = Field(min_length=1)
    flag: bool = False
    """The study is positive: some vertebra reaches ``flag_min_grade``."""
    max_genant_grade: Grade = 0
    flag_min_grade: int = Field(default=GradingSettings().flag_min_grade, ge=1, le=3)
    """The grade that flagged studies when this result was made (from GradingSettings)."""
    vertebrae: tuple[VertebraFinding, ...] = ()
    level_naming: LevelNaming | None = None
    """How the levels were named; None when the study was not screened."""
    timings_ms: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)
    """Wall time per stage, milliseconds."""

    @field_validator("timings_ms")
    @classmethod
    def _sorted_timings(cls, value: dict[str, float]) -> dict[str, float]:
        # A fixed key order makes two equal results serialise to the same bytes.
        return {stage: round(value[stage], 2) for stage in sorted(value)}

    @model_validator(mode="after")
    def _consistent(self) -> ScreeningResult:
        if self.status == "ok":
            if self.reason is not None:
                raise ValueError(f"status 'ok' must not carry a reason; got {self.reason!r}")
        else:
            if self.reason is None or not _REASON.match(self.reason):
                raise ValueError(
                    f"status {self.status!r} needs a reason written '<code>: <message>'; "
                    f"got {self.reason!r}"
                )
            if self.vertebrae or self.level_naming is not None:
                raise ValueError(
                    f"status {self.status!r} cannot carry findings; got {len(self.vertebrae)} vertebrae"
                    + (" and a level naming" if self.level_naming is not None else "")
                )
        levels = [v.level for v in self.vertebrae]
        duplicates = sorted({level for level in levels if levels.count(level) > 1})
        if duplicates:
            raise ValueError(f"each level may appear once; repeated: {', '.join(duplicates)}")
        highest = max((v.genant_grade for v in self.vertebrae), default=0)
        if self.max_genant_grade != highest:
            raise ValueError(
                f"max_genant_grade {self.max_genant_grade} differs from the highest vertebra "
                f"grade {highest}"
            )
        if self.flag != (highest >= self.flag_min_grade):
            raise ValueError(
                f"flag {self.flag} is inconsistent with max_genant_grade {highest} and "
                f"flag_min_grade {self.flag_min_grade}"
            )
        return self

    # ----------------------------------------------------------------- builders

    @classmethod
    def from_findings(
        cls,
        study_instance_uid: str,
        series_instance_uid: str | None,
        vertebrae: Iterable[VertebraFinding],
        *,
        pipeline_version: str,
        grading: GradingSettings,
        timings_ms: Mapping[str, float] | None = None,
        level_naming: LevelNaming | None = None,
    ) -> ScreeningResult:
        """An ``ok`` result: vertebrae sorted cranial to caudal, flag and max grade computed."""
        ordered = tuple(sorted(vertebrae, key=lambda v: level_index(v.level)))
        highest = max((v.genant_grade for v in ordered), default=0)
        return cls(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            status="ok",
            pipeline_version=pipeline_version,
            flag=highest >= grading.flag_min_grade,
            max_genant_grade=highest,
            flag_min_grade=grading.flag_min_grade,
            vertebrae=ordered,
            level_naming=level_naming,
            timings_ms=dict(timings_ms or {}),
        )

    @classmethod
    def error(
        cls,
        study_instance_uid: str,
        exc: BaseException,
        *,
        series_instance_uid: str | None = None,
        pipeline_version: str | None = None,
        timings_ms: Mapping[str, float] | None = None,
    ) -> ScreeningResult:
        """A study that could not be screened; the reason is the error's code and message.

        Errors of vcfscreen keep their own code (``corrupt``, ``unsupported``, ``transient``
        ...); anything else is reported as ``internal`` with its exception type, since it is
        a bug rather than a property of the study.
        """
        return cls._failed("error", study_instance_uid, _reason_of(exc), series_instance_uid,
                           pipeline_version, timings_ms)

    @classmethod
    def not_eligible(
        cls,
        study_instance_uid: str,
        reason: NotEligibleError | str,
        *,
        series_instance_uid: str | None = None,
        pipeline_version: str | None = None,
        timings_ms: Mapping[str, float] | None = None,
    ) -> ScreeningResult:
        """A valid study that is not a screening CT; ``reason`` is the error or its message."""
        if isinstance(reason, BaseException):
            text = _reason_of(reason)
        elif _REASON.match(reason):
            text = reason
        else:
            text = f"{NotEligibleError.code}: {reason}"
        return cls._failed("not_eligible", study_instance_uid, text, series_instance_uid,
                           pipeline_version, timings_ms)

    @classmethod
    def from_exception(cls, study_instance_uid: str, exc: BaseException, **kwargs) -> ScreeningResult:
        """``not_eligible`` for a :class:`NotEligibleError`, ``error`` for anything else."""
        if isinstance(exc, NotEligibleError):
            return cls.not_eligible(study_instance_uid, exc, **kwargs)
        return cls.error(study_instance_uid, exc, **kwargs)

    @classmethod
    def _failed(
        cls,
        status: Status,
        study_instance_uid: str,
        reason: str,
        series_instance_uid: str | None,
        version: str | None,
        timings_ms: Mapping[str, float] | None,
    ) -> ScreeningResult:
        return cls(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            status=status,
            reason=reason,
            pipeline_version=version or pipeline_version(),
            timings_ms=dict(timings_ms or {}),
        )

    # ------------------------------------------------------------ serialisation

    @property
    def reason_code(self) -> str | None:
        """The code part of ``reason`` (``"corrupt"`` of ``"corrupt: slice 12 ..."``)."""
        return reason_code(self.reason)

    def to_json_line(self) -> str:
        """One line of compact JSON, keys in declaration order, no trailing newline."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ScreeningResult:
        """Parse and validate one line written by :meth:`to_json_line`."""
        return cls.model_validate_json(text)


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, VcfScreenError):
        return f"{exc.code}: {exc.message.strip() or type(exc).__name__}"
    message = str(exc).strip() or "no message"
    return f"internal: {type(exc).__name__}: {message}"
