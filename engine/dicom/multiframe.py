"""Enhanced (multi-frame) CT: per-frame functional groups -> one FrameHeader per frame.

An Enhanced CT Image Storage instance (1.2.840.10008.5.1.4.1.1.2.1, and its Legacy
Converted sibling ...2.2) holds a whole series in one object. The geometry and rescale that
a classic CT file carries at the top level live in functional groups: each attribute is in
the frame's item of PerFrameFunctionalGroupsSequence, or, when it is the same for every
frame, once in SharedFunctionalGroupsSequence. This module reads both, so the rest of the
loader sees the same per-plane headers whatever the storage class.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from engine.dicom.values import (
    FrameHeader,
    HeaderProblems,
    read_float,
    read_floats,
    read_text,
)

ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"


def is_enhanced(ds: Dataset) -> bool:
    """True when the instance describes its frames with functional groups."""
    try:
        return "PerFrameFunctionalGroupsSequence" in ds
    except Exception:  # noqa: BLE001 - a malformed dataset is simply not enhanced
        return False


def _first_item(
    container: Dataset | None, keyword: str, problems: HeaderProblems
) -> Dataset | None:
    """The first item of sequence ``keyword`` inside ``container``, or None."""
    if container is None:
        return None
    try:
        if keyword not in container:
            return None
        sequence = container[keyword].value
        return sequence[0] if sequence else None
    except Exception:  # noqa: BLE001 - malformed sequence bytes
        problems.add(f"{keyword} cannot be read", keyword)
        return None


def _macro(
    per_frame: Dataset | None, shared: Dataset | None, keyword: str, problems: HeaderProblems
) -> Dataset | None:
    """A functional group macro for one frame: the per-frame one wins over the shared one."""
    return _first_item(per_frame, keyword, problems) or _first_item(shared, keyword, problems)


def _frame_header(
    index: int, per_frame: Dataset | None, shared: Dataset | None, problems: HeaderProblems
) -> FrameHeader:
    position = _macro(per_frame, shared, "PlanePositionSequence", problems)
    orientation = _macro(per_frame, shared, "PlaneOrientationSequence", problems)
    measures = _macro(per_frame, shared, "PixelMeasuresSequence", problems)
    transform = _macro(per_frame, shared, "PixelValueTransformationSequence", problems)
    empty = Dataset()
    return FrameHeader(
        position=read_floats(position or empty, "ImagePositionPatient", 3, problems),
        orientation=read_floats(orientation or empty, "ImageOrientationPatient", 6, problems),
        pixel_spacing=read_floats(measures or empty, "PixelSpacing", 2, problems),
        thickness=read_float(measures or empty, "SliceThickness", problems),
        slope=read_float(transform or empty, "RescaleSlope", problems),
        intercept=read_float(transform or empty, "RescaleIntercept", problems),
        frame_index=index,
    )


def enhanced_frames(
    ds: Dataset, number_of_frames: int, problems: HeaderProblems
) -> tuple[tuple[FrameHeader, ...], dict[str, Any]]:
    """One :class:`FrameHeader` per frame, plus series attributes found in the groups.

    The extra dict may hold ``kernel`` (CT Reconstruction macro) and ``kvp`` (CT X-Ray
    Details macro), which an enhanced CT keeps inside the groups rather than at the top.
    A per-frame sequence whose length differs from NumberOfFrames is recorded as a problem.
    """
    shared = _first_item(ds, "SharedFunctionalGroupsSequence", problems)
    try:
        per_frame_items = list(ds["PerFrameFunctionalGroupsSequence"].value)
    except Exception:  # noqa: BLE001 - malformed sequence bytes
        problems.add("PerFrameFunctionalGroupsSequence cannot be read")
        per_frame_items = []
    if len(per_frame_items) != number_of_frames:
        problems.add(
            f"NumberOfFrames is {number_of_frames} but the per-frame functional groups "
            f"describe {len(per_frame_items)} frames"
        )
    frames = tuple(
        _frame_header(index, item, shared, problems) for index, item in enumerate(per_frame_items)
    )
    extra: dict[str, Any] = {}
    first = per_frame_items[0] if per_frame_items else None
    reconstruction = _macro(first, shared, "CTReconstructionSequence", problems)
    if reconstruction is not None:
        kernel = read_text(reconstruction, "ConvolutionKernel", problems)
        if kernel:
            extra["kernel"] = "\\".join(kernel)
    xray = _macro(first, shared, "CTXRayDetailsSequence", problems)
    if xray is not None:
        kvp = read_float(xray, "KVP", problems)
        if kvp is not None:
            extra["kvp"] = kvp
    return frames, extra
