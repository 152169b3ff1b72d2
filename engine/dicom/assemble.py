"""Volume assembly: decode the planes a :class:`StackPlan` names into one int16 volume.

The volume is allocated once (slices x rows x columns, int16) and every slice is decoded and
rescaled straight into it. Planes found at the same position are decoded and compared:
identical pixels are a harmless duplicate (dropped, with a warning), different pixels mean
two images claim one place and the series is refused. Missing slices the plan allows are
interpolated linearly from their two neighbours, one slice at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.dicom.decode import decode_into, transfer_syntax_name
from engine.dicom.headers import InstanceHeader
from engine.dicom.series import Series, kernel_class
from engine.dicom.stack import StackPlan
from engine.errors import CorruptStudyError
from engine.volume import Volume, affine_from_dicom

LOSSY_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy allowed)
        "1.2.840.10008.1.2.4.203",  # HTJ2K (lossy allowed)
    }
)


def _tasks(
    plan: StackPlan, plane_slots: list[tuple[int, int]]
) -> list[tuple[InstanceHeader, list[int | None], list[int]]]:
    """Group (plane index, output slice) pairs by instance, frames in file order."""
    by_instance: dict[int, tuple[InstanceHeader, list[tuple[int | None, int]]]] = {}
    for plane_index, slot in plane_slots:
        plane = plan.planes[plane_index]
        entry = by_instance.setdefault(id(plane.header), (plane.header, []))
        entry[1].append((plane.frame.frame_index, slot))
    tasks = []
    for header, pairs in by_instance.values():
        pairs.sort(key=lambda pair: -1 if pair[0] is None else pair[0])
        tasks.append((header, [frame for frame, _ in pairs], [slot for _, slot in pairs]))
    return tasks


def _rescale_lookup(plan: StackPlan):
    table = {
        (id(p.header), p.frame.frame_index): (p.frame.slope, p.frame.intercept) for p in plan.planes
    }

    def rescale_of(
        header: InstanceHeader, frame_index: int | None
    ) -> tuple[float | None, float | None]:
        return table[(id(header), frame_index)]

    return rescale_of


def _check_coincident(plan: StackPlan, hu: np.ndarray, threads: int) -> int:
    """Compare every plane that shares a position with a kept one; return how many were dropped."""
    slot_of = {
        plane_index: slot for slot, plane_index in enumerate(plan.slots) if plane_index is not None
    }
    dropped = 0
    scratch = np.empty((1, plan.rows, plan.columns), dtype=np.int16)
    rescale_of = _rescale_lookup(plan)
    for kept, others in plan.coincident.items():
        for other in others:
            decode_into(_tasks(plan, [(other, 0)]), scratch, rescale_of, threads=1)
            if not np.array_equal(scratch[0], hu[slot_of[kept]]):
                position = float(np.dot(plan.planes[kept].frame.position, plan.normal))  # type: ignore[arg-type]
                raise CorruptStudyError(
                    f"two different images at the same slice position {position:.2f} mm "
                    f"({plan.planes[kept].name} and {plan.planes[other].name})"
                )
            dropped += 1
    return dropped


def fill_missing(hu: np.ndarray, slots: list[int | None]) -> int:
    """Interpolate the slices whose slot is None from the nearest decoded neighbours."""
    known = [k for k, slot in enumerate(slots) if slot is not None]
    filled = 0
    for k, slot in enumerate(slots):
        if slot is not None:
            continue
        below = max(j for j in known if j < k)
        above = min(j for j in known if j > k)
        weight = np.float32((k - below) / (above - below))
        mixed = (
            hu[below].astype(np.float32) * (np.float32(1) - weight)
            + hu[above].astype(np.float32) * weight
        )
        hu[k] = np.rint(mixed)
        filled += 1
    return filled


def _meta(series: Series, plan: StackPlan, filled: int, dropped: int) -> dict[str, Any]:
    """Series attributes kept with the volume; no patient attribute, no UID."""
    headers = series.instances
    syntaxes = sorted({h.transfer_syntax_uid for h in headers if h.transfer_syntax_uid})
    kvp = series.most_common("kvp")
    return {
        "modality": series.modality,
        "series_number": series.series_number,
        "manufacturer": series.most_common("manufacturer"),
        "thickness_mm": series.thickness if series.thickness is not None else plan.spacing_mm,
        "spacing_between_slices_mm": plan.spacing_mm,
        "pixel_spacing_mm": list(plan.pixel_spacing),
        "kernel": series.kernel,
        "kernel_class": kernel_class(series.kernel),
        "kvp": kvp,
        "n_slices": plan.n_slices,
        "n_instances": len(headers),
        "rows": plan.rows,
        "columns": plan.columns,
        "patient_position": series.most_common("patient_position"),
        "transfer_syntax": ", ".join(transfer_syntax_name(uid) for uid in syntaxes) or None,
        "transfer_syntax_uid": syntaxes[0] if len(syntaxes) == 1 else syntaxes,
        "enhanced_multiframe": any(h.enhanced for h in headers),
        "image_type": list(series.image_type),
        "slice_normal": [float(v) for v in plan.normal],
        "gantry_tilt_deg": plan.tilt_deg,
        "coverage_mm": plan.coverage_mm,
        "filled_slices": filled,
        "dropped_duplicates": dropped,
    }


def assemble_volume(
    series: Series, plan: StackPlan, study_instance_uid: str, threads: int = 2
) -> tuple[Volume, list[str]]:
    """Decode the planned slices into a :class:`Volume`; return it with handled oddities.

    Raises :class:`CorruptStudyError` for pixels that do not decode or conflicting
    duplicates, :class:`UnsupportedStudyError` for a transfer syntax without a decoder.
    """
    warnings = list(plan.warnings)
    hu = np.empty((plan.n_slices, plan.rows, plan.columns), dtype=np.int16)
    placed = [
        (plane_index, slot)
        for slot, plane_index in enumerate(plan.slots)
        if plane_index is not None
    ]
    decode_into(_tasks(plan, placed), hu, _rescale_lookup(plan), threads=threads)
    dropped = _check_coincident(plan, hu, threads)
    if dropped:
        warnings.append(
            f"{dropped} duplicate image(s) at an occupied position, with identical pixels, were dropped"
        )
    filled = fill_missing(hu, plan.slots)
    orientation = np.asarray(plan.orientation, dtype=float)
    affine = affine_from_dicom(
        first_position=plan.first_position,
        row_cosine=orientation[:3],
        column_cosine=orientation[3:6],
        slice_step=plan.step,
        pixel_spacing=plan.pixel_spacing,
    )
    notes = [f"{h.name}: {note}" for h in series.instances for note in h.notes]
    if notes:
        more = f" and {len(notes) - 3} more" if len(notes) > 3 else ""
        warnings.append(f"malformed optional values were ignored ({'; '.join(notes[:3])}{more})")
    lossy = sorted(
        {
            h.transfer_syntax_uid
            for h in series.instances
            if h.transfer_syntax_uid in LOSSY_TRANSFER_SYNTAXES
        }
    )
    if lossy:
        warnings.append(
            f"lossy compression ({', '.join(transfer_syntax_name(uid) for uid in lossy)})"
        )
    volume = Volume(
        hu=hu,
        affine=affine,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        meta=_meta(series, plan, filled, dropped),
    )
    return volume, warnings
