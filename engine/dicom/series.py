"""Grouping instances into series, and choosing the series fit for screening.

Selection reads headers only. Every series gets a :class:`SeriesDecision` saying whether it
is eligible and, if not, why, in words meant for a radiology IT person. Series are named in
messages by their SeriesNumber and a short hash of their UID (through
:func:`engine.logs.study_ref`), never by UID or SeriesDescription.

Preference among eligible series (the first key that differs decides):

1. kernel: standard (soft tissue) before unknown before sharp (bone, lung) -- the models
   are trained on standard-kernel reconstructions;
2. coverage: series within 90% of the longest eligible coverage before shorter ones -- a
   thin series of the abdomen alone would miss the thoracic spine;
3. thinner slices first;
4. more coverage, then more slices, then the lower SeriesNumber, then the UID (stable).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from engine.dicom.decode import unsupported_reason
from engine.dicom.geometry import obliquity_deg, plane_name, slice_normal
from engine.dicom.headers import InstanceHeader
from engine.dicom.stack import Plane, StackPlan, plan_stack
from engine.errors import (
    CorruptStudyError,
    NotEligibleError,
    StudyError,
    UnsupportedStudyError,
)
from engine.logs import study_ref
from engine.settings import SelectionSettings

COVERAGE_SHARE = 0.9
"""Eligible series covering at least this share of the longest one count as full coverage."""

_SHARP_WORDS = ("BONE", "LUNG", "SHARP", "DETAIL", "EDGE", "ULTRA", "HIGH", "INNER EAR")
_STANDARD_WORDS = ("STANDARD", "STND", "STD", "SOFT", "SMOOTH", "BODY", "ABDOMEN", "MEDIUM")
_SIEMENS = re.compile(r"^[A-Z]{1,2}(\d{2})[A-Z]?(\s|$|\\)")
_CANON = re.compile(r"^FC(\d{2})")


def kernel_class(kernel: str | None) -> str:
    """``standard``, ``sharp`` or ``unknown``: a vendor-name heuristic for ConvolutionKernel.

    Words (GE ``STANDARD``/``BONE``, Philips and others spelling it out) decide first;
    then Siemens-style ``B30f``/``Br40``/``I70f`` (number <= 45 is standard) and
    Canon/Toshiba ``FC03``..``FC86`` (below 30 is a body kernel); Philips single letters
    A-C are standard, D, E, L and Y* sharp. Anything else is unknown.
    """
    if not kernel:
        return "unknown"
    name = kernel.strip().upper()
    if any(word in name for word in _SHARP_WORDS):
        return "sharp"
    if any(word in name for word in _STANDARD_WORDS):
        return "standard"
    if match := _CANON.match(name):
        return "standard" if int(match.group(1)) < 30 else "sharp"
    if match := _SIEMENS.match(name):
        return "standard" if int(match.group(1)) <= 45 else "sharp"
    first = name.split("\\")[0]
    if first in {"A", "B", "C"}:
        return "standard"
    if first in {"D", "E", "L"} or (first.startswith("Y") and len(first) == 2):
        return "sharp"
    return "unknown"


_KERNEL_RANK = {"standard": 0, "unknown": 1, "sharp": 2}


@dataclass
class Series:
    """The instances of one SeriesInstanceUID, with the attributes selection looks at."""

    series_instance_uid: str
    instances: list[InstanceHeader]

    def most_common(self, attribute: str):
        """The most frequent non-missing value of a header attribute across the instances."""
        values = [
            getattr(h, attribute) for h in self.instances if getattr(h, attribute) is not None
        ]
        return Counter(values).most_common(1)[0][0] if values else None

    @property
    def study_instance_uid(self) -> str | None:
        return self.most_common("study_instance_uid")

    @property
    def modality(self) -> str | None:
        return self.most_common("modality")

    @property
    def series_number(self) -> int | None:
        return self.most_common("series_number")

    @property
    def image_type(self) -> tuple[str, ...]:
        return self.most_common("image_type") or ()

    @property
    def kernel(self) -> str | None:
        return self.most_common("kernel")

    @property
    def planes(self) -> list[Plane]:
        return [Plane(header, frame) for header in self.instances for frame in header.frames]

    @property
    def thickness(self) -> float | None:
        """Median SliceThickness of the planes, None when no plane states it."""
        values = [p.frame.thickness for p in self.planes if p.frame.thickness is not None]
        return float(statistics.median(values)) if values else None

    @property
    def label(self) -> str:
        """How the series appears in messages: its number and a short hash of its UID."""
        number = (
            f"series #{self.series_number}"
            if self.series_number is not None
            else "series (no number)"
        )
        return f"{number} [{study_ref(self.series_instance_uid).removeprefix('study-')}]"


def group_series(headers: Sequence[InstanceHeader]) -> list[Series]:
    """Readable instances grouped by SeriesInstanceUID, ordered by SeriesNumber then UID.

    Headers with ``error`` set or without a SeriesInstanceUID are left out (the caller
    reports them).
    """
    groups: dict[str, list[InstanceHeader]] = {}
    for header in headers:
        if header.error is None and header.series_instance_uid:
            groups.setdefault(header.series_instance_uid, []).append(header)
    series = [Series(uid, instances) for uid, instances in groups.items()]
    series.sort(
        key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid)
    )
    return series


@dataclass(frozen=True)
class SeriesDecision:
    """Whether one series is fit for screening, and why not.

    ``error_code`` is the code of the worst kind of reason (``not_eligible``, ``corrupt``
    or ``unsupported``); ``rank`` orders eligible series (0 is the preferred one).
    """

    series_instance_uid: str
    eligible: bool
    reasons: tuple[str, ...]
    n_instances: int
    thickness: float | None
    label: str = ""
    modality: str | None = None
    series_number: int | None = None
    kernel: str | None = None
    kernel_class: str = "unknown"
    orientation: str | None = None
    n_slices: int | None = None
    coverage_mm: float | None = None
    spacing_mm: float | None = None
    error_code: str | None = None
    rank: int | None = None

    def describe(self) -> str:
        """One line: the series and its verdict."""
        if self.eligible:
            return f"{self.label}: eligible (rank {self.rank})"
        return f"{self.label}: " + "; ".join(self.reasons)


@dataclass
class _Verdict:
    reasons: list[str] = field(default_factory=list)
    kinds: list[type[StudyError]] = field(default_factory=list)

    def add(self, reason: str, kind: type[StudyError] = NotEligibleError) -> None:
        self.reasons.append(reason)
        self.kinds.append(kind)


def _header_rules(series: Series, settings: SelectionSettings, verdict: _Verdict) -> None:
    """Rules that need no geometry: modality, image type, pixel format, thickness, size."""
    instances = series.instances
    if not any(h.is_image for h in instances):
        verdict.add(f"holds no images (modality {series.modality or 'not stated'})")
        return
    if series.modality != "CT":
        verdict.add(f"modality is {series.modality or 'not stated'}; only CT is screened")
    image_type = series.image_type
    if "LOCALIZER" in image_type:
        verdict.add("localizer (scout) images, not cross-sectional slices")
    if settings.require_original and (not image_type or image_type[0] != "ORIGINAL"):
        shown = "\\".join(image_type) if image_type else "missing"
        verdict.add(
            f"not an original reconstruction (ImageType {shown}), e.g. a reformat or a derived series"
        )
    colour = {h.samples_per_pixel for h in instances if (h.samples_per_pixel or 1) != 1}
    if colour:
        verdict.add(
            f"colour images ({max(colour)} samples per pixel), not CT grey values",
            UnsupportedStudyError,
        )
    problems = [(h.name, p) for h in instances for p in h.problems]
    if problems:
        listed = "; ".join(f"{name}: {problem}" for name, problem in problems[:3])
        verdict.add(f"malformed header values ({listed})", CorruptStudyError)
    thickness = series.thickness
    if thickness is not None and thickness > settings.max_slice_thickness_mm:
        verdict.add(
            f"slices are {thickness:g} mm thick; at most {settings.max_slice_thickness_mm:g} mm is screened"
        )
    n_planes = sum(len(h.frames) for h in instances)
    if n_planes > settings.max_slices:
        verdict.add(f"{n_planes} images exceed the limit of {settings.max_slices} per series")
    reasons = {reason for h in instances if h.is_image and (reason := unsupported_reason(h))}
    for reason in sorted(reasons):
        verdict.add(reason, UnsupportedStudyError)


def _orientation_rule(series: Series, settings: SelectionSettings, verdict: _Verdict) -> str | None:
    """The plane name of the series (from its first oriented plane); non-axial is refused."""
    oriented = next((p for p in series.planes if p.frame.orientation is not None), None)
    if oriented is None:
        return None
    try:
        normal = slice_normal(oriented.frame.orientation)  # type: ignore[arg-type]
    except ValueError:
        return None  # reported by the stack check as an invalid orientation
    name = plane_name(normal, settings.max_obliquity_deg)
    tilt_from_z = obliquity_deg(normal)
    if tilt_from_z > settings.max_obliquity_deg:
        verdict.add(
            f"{name} slices (normal {tilt_from_z:.0f} degrees from the head-foot axis); "
            f"only axial series within {settings.max_obliquity_deg:g} degrees are screened"
        )
    return name


_SEVERITY = {NotEligibleError: 0, UnsupportedStudyError: 1, CorruptStudyError: 2}


def evaluate_series(
    series: Series, settings: SelectionSettings
) -> tuple[SeriesDecision, StackPlan | None]:
    """The decision for one series, and its stack plan when the geometry allows one."""
    verdict = _Verdict()
    _header_rules(series, settings, verdict)
    orientation = _orientation_rule(series, settings, verdict)
    plan: StackPlan | None = None
    if any(h.is_image for h in series.instances):
        try:
            plan = plan_stack(series.planes, settings)
        except StudyError as error:
            if not verdict.reasons:  # a stack fault matters only for an otherwise fit series
                verdict.add(error.message, type(error))
    if plan is not None and not verdict.reasons:
        if plan.n_slices < settings.min_slices:
            verdict.add(f"only {plan.n_slices} slices; at least {settings.min_slices} are needed")
        if plan.coverage_mm < settings.min_coverage_mm:
            verdict.add(
                f"covers {plan.coverage_mm:.0f} mm head-to-foot; "
                f"at least {settings.min_coverage_mm:g} mm is needed"
            )
    thickness = series.thickness
    if thickness is None and plan is not None:
        thickness = plan.spacing_mm
    # Any eligibility reason makes the series "not eligible", whatever else is wrong with it;
    # only a series that fails on its bytes or geometry alone carries "corrupt"/"unsupported".
    if NotEligibleError in verdict.kinds:
        worst: type[StudyError] | None = NotEligibleError
    else:
        worst = max(verdict.kinds, key=lambda kind: _SEVERITY.get(kind, 0), default=None)
    decision = SeriesDecision(
        series_instance_uid=series.series_instance_uid,
        eligible=not verdict.reasons,
        reasons=tuple(verdict.reasons),
        n_instances=len(series.instances),
        thickness=thickness,
        label=series.label,
        modality=series.modality,
        series_number=series.series_number,
        kernel=series.kernel,
        kernel_class=kernel_class(series.kernel),
        orientation=orientation,
        n_slices=plan.n_slices if plan else None,
        coverage_mm=plan.coverage_mm if plan else None,
        spacing_mm=plan.spacing_mm if plan else None,
        error_code=worst.code if worst else None,
    )
    return decision, plan


def preference_key(decision: SeriesDecision, longest_coverage: float) -> tuple:
    """Sort key of an eligible series (see the module docstring for the rule)."""
    coverage = decision.coverage_mm or 0.0
    return (
        _KERNEL_RANK[decision.kernel_class],
        coverage < COVERAGE_SHARE * longest_coverage,
        round(decision.thickness or 0.0, 2),
        -coverage,
        -(decision.n_slices or 0),
        decision.series_number if decision.series_number is not None else 1 << 30,
        decision.series_instance_uid,
    )


def not_eligible_error(decisions: Sequence[SeriesDecision]) -> StudyError:
    """The error for a study with no eligible series, listing every series' reasons.

    When a series passed every eligibility rule but its images are broken or in an
    unsupported form, the error takes that kind (corrupt before unsupported): the study
    was a screening CT, and the archive should hear that its images are the problem.
    """
    kinds = {d.error_code for d in decisions if d.error_code}
    if CorruptStudyError.code in kinds:
        kind: type[StudyError] = CorruptStudyError
    elif UnsupportedStudyError.code in kinds:
        kind = UnsupportedStudyError
    else:
        kind = NotEligibleError
    listed = "; ".join(d.describe() for d in decisions)
    return kind(f"no series is fit for screening ({len(decisions)} series): {listed}")


def select_series(
    series: Sequence[Series], settings: SelectionSettings
) -> tuple[Series, list[SeriesDecision]]:
    """The preferred eligible series, and a decision for every series (input order).

    Raises the error of :func:`not_eligible_error` when no series qualifies, and
    :class:`NotEligibleError` when there is no series at all.
    """
    if not series:
        raise NotEligibleError("the study holds no DICOM image series")
    decisions = [evaluate_series(s, settings)[0] for s in series]
    eligible = [d for d in decisions if d.eligible]
    if not eligible:
        raise not_eligible_error(decisions)
    longest = max(d.coverage_mm or 0.0 for d in eligible)
    ranked = sorted(eligible, key=lambda d: preference_key(d, longest))
    rank_of = {d.series_instance_uid: rank for rank, d in enumerate(ranked)}
    decisions = [replace(d, rank=rank_of.get(d.series_instance_uid)) for d in decisions]
    chosen_uid = ranked[0].series_instance_uid
    chosen = next(s for s in series if s.series_instance_uid == chosen_uid)
    return chosen, decisions
