"""Defensive reading of DICOM values, and the per-frame header they fill.

pydicom converts values lazily, so a malformed value (``IS`` of ``"1A"``, a position with
two numbers, a non-numeric spacing) raises or warns only when it is touched. Every reader
here touches the value once, converts it to a plain Python type, and on failure records a
sentence in a :class:`HeaderProblems` instead of raising: selection turns those sentences
into reasons, and loading turns them into a :class:`~engine.errors.CorruptStudyError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class FrameHeader:
    """Geometry and rescale of one image plane (a single-frame instance, or one frame).

    ``frame_index`` is None for a single-frame instance and the 0-based frame number inside
    a multi-frame instance. Missing values stay None; defaults are applied by the users.
    """

    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    thickness: float | None
    slope: float | None
    intercept: float | None
    frame_index: int | None


MINOR_KEYWORDS = frozenset(
    {
        "CTReconstructionSequence",
        "CTXRayDetailsSequence",
        "ConvolutionKernel",
        "GantryDetectorTilt",
        "InstanceNumber",
        "KVP",
        "Manufacturer",
        "PatientPosition",
        "SeriesNumber",
        "SliceThickness",
        "SpacingBetweenSlices",
    }
)
"""Attributes the volume can do without: a malformed one is noted, not held against the series."""


class HeaderProblems:
    """Sentences describing malformed values found while reading one instance.

    A problem is minor when it concerns one of :data:`MINOR_KEYWORDS`; every other problem
    (geometry, pixel format, rescale, functional groups) is critical and makes the series
    unusable.
    """

    def __init__(self) -> None:
        self._critical: list[str] = []
        self._minor: list[str] = []

    def add(self, sentence: str, keyword: str | None = None) -> None:
        target = self._minor if keyword in MINOR_KEYWORDS else self._critical
        if sentence not in target:
            target.append(sentence)

    def critical(self) -> tuple[str, ...]:
        return tuple(self._critical)

    def minor(self) -> tuple[str, ...]:
        return tuple(self._minor)


_ASCII_VRS = frozenset({"DS", "IS", "CS", "UI", "DA", "TM", "DT", "AS"})
"""VRs whose bytes are plain ASCII whatever the character set: safe to split ourselves."""
_BINARY_INTS = {"US": (2, False), "SS": (2, True), "UL": (4, False), "SL": (4, True)}
"""Binary integer VRs read from their bytes when they hold exactly one value."""
_NOT_FAST = object()


@lru_cache(maxsize=None)
def _tag_of(keyword: str) -> int | None:
    return tag_for_keyword(keyword)


def _fast_value(ds: Dataset, keyword: str) -> Any:
    """The value straight from the element's raw bytes, for ASCII VRs not yet converted.

    pydicom's conversion of every element (hooks, value objects, multi-value wrappers) is
    most of the cost of a header scan over hundreds of slices; numbers and UIDs need only a
    split of their bytes. Anything else (binary VRs, implicit VR, converted elements) takes
    the normal path (``_NOT_FAST``). Numbers come back as strings; callers parse them."""
    tag = _tag_of(keyword)
    if tag is None:
        return _NOT_FAST
    elem = ds._dict.get(tag)  # the raw element, without triggering conversion
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement) or elem.value is None:
        return _NOT_FAST
    if elem.VR in _BINARY_INTS and elem.is_little_endian:
        size, signed = _BINARY_INTS[elem.VR]
        if len(elem.value) != size:  # several values, or malformed: pydicom decides
            return _NOT_FAST
        return int.from_bytes(elem.value, "little", signed=signed)
    if elem.VR not in _ASCII_VRS:
        return _NOT_FAST
    text = elem.value.decode("latin-1").strip(" \x00")
    if not text:
        return None
    parts = text.split("\\")
    return parts[0] if len(parts) == 1 else parts


def _raw_value(ds: Dataset, keyword: str, problems: HeaderProblems) -> Any:
    """The converted value of ``keyword`` in ``ds``, or None when absent or unreadable."""
    fast = _fast_value(ds, keyword)
    if fast is not _NOT_FAST:
        return fast
    try:
        if keyword not in ds:
            return None
        value = ds[keyword].value
    except Exception:  # noqa: BLE001 - pydicom raises many types for malformed bytes
        problems.add(f"{keyword} cannot be read", keyword)
        return None
    if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
        return None
    return value


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _to_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def read_text(ds: Dataset, keyword: str, problems: HeaderProblems) -> tuple[str, ...] | None:
    """A string value as a tuple of its parts (one for VM 1), stripped; None when absent."""
    value = _raw_value(ds, keyword, problems)
    if value is None:
        return None
    parts = tuple(str(item).strip() for item in _as_list(value))
    return parts if any(parts) else None


def read_float(ds: Dataset, keyword: str, problems: HeaderProblems) -> float | None:
    """A single number (the first, if several are given); None when absent or malformed."""
    value = _raw_value(ds, keyword, problems)
    if value is None:
        return None
    number = _to_float(_as_list(value)[0])
    if number is None:
        problems.add(f"{keyword} is not a number ({_shown(value)})", keyword)
    return number


def read_int(ds: Dataset, keyword: str, problems: HeaderProblems) -> int | None:
    """A single integer; None when absent or malformed."""
    number = read_float(ds, keyword, problems)
    if number is None:
        return None
    if number != int(number):
        problems.add(f"{keyword} is not an integer ({number})", keyword)
        return None
    return int(number)


def read_floats(
    ds: Dataset, keyword: str, count: int, problems: HeaderProblems
) -> tuple[float, ...] | None:
    """Exactly ``count`` numbers (a position, an orientation, a spacing); None otherwise."""
    value = _raw_value(ds, keyword, problems)
    if value is None:
        return None
    items = _as_list(value)
    numbers = [_to_float(item) for item in items]
    if len(numbers) != count or any(number is None for number in numbers):
        problems.add(f"{keyword} should hold {count} numbers but holds {_shown(value)}", keyword)
        return None
    return tuple(float(number) for number in numbers)  # type: ignore[arg-type]


def _shown(value: Any) -> str:
    """A value for a message: geometry numbers are not identifying, but keep it short."""
    text = "\\".join(str(item) for item in _as_list(value))
    return repr(text[:60])
