"""truth.json: what the evaluation scores against, computed from what was rendered.

Centroids come from the label volume through the affine (not from the plan), so they are
exactly where the labelled bodies are; heights come from the endplate surfaces the
renderer used; grades from the heights by the Genant rule. Only vertebrae whose body lies
wholly in the field of view are listed; bodies cut by the edge of the scan are listed
under ``excluded_vertebrae`` and carry the label 255.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import __version__
from engine.phantom.pathology import genant_grade
from engine.phantom.render import PARTIAL_LABEL, StudyPlan, label_values
from engine.phantom.spine import Vertebra
from engine.volume import index_to_lps

SCHEMA_VERSION = 1


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def body_centroid(labels: np.ndarray, value: int, block: tuple[slice, slice, slice] | None) -> np.ndarray | None:
    """Mean (slice, row, column) index of the voxels labelled ``value`` (searched in block)."""
    region = labels if block is None else labels[block]
    found = np.nonzero(region == value)
    if len(found[0]) == 0:
        return None
    offset = np.zeros(3) if block is None else np.array([s.start for s in block], dtype=float)
    return np.array([axis.mean() for axis in found]) + offset


def _vertebra_entry(vertebra: Vertebra, value: int, centroid_lps: np.ndarray) -> dict[str, Any]:
    heights = vertebra.heights()
    loss = max(0.0, 1.0 - min(heights.values()) / vertebra.h0)
    grade = genant_grade(loss)
    if grade != vertebra.grade:  # the planted grade must be what the shape gives
        raise ValueError(f"{vertebra.level}: planted grade {vertebra.grade} but its heights give grade {grade}")
    lesions = sorted({lesion.kind for lesion in vertebra.lesions})
    return {
        "level": vertebra.level,
        "label_value": value,
        "centroid_lps_mm": [_r(c) for c in centroid_lps],
        "genant_grade": grade,
        "height_loss": _r(loss, 4),
        "morphology": vertebra.morphology,
        "heights_mm": {name: _r(h) for name, h in heights.items()} | {"expected": _r(vertebra.h0)},
        "axis_superior_lps": [_r(c, 4) for c in vertebra.frame[:, 2]],
        "axis_posterior_lps": [_r(c, 4) for c in vertebra.frame[:, 1]],
        "cancellous_hu": _r(vertebra.cancellous_hu, 1),
        "rib_bearing": vertebra.ribs,
        "sacralised": vertebra.sacralised,
        "findings": lesions,
    }


def build_truth(
    plan: StudyPlan,
    labels: np.ndarray,
    affine: np.ndarray,
    blocks: list[tuple[slice, slice, slice] | None],
    study_uid: str,
    series: list[dict[str, Any]],
) -> dict[str, Any]:
    """The truth.json document of a rendered study."""
    spine, acquisition = plan.spine, plan.acquisition
    vertebrae, excluded = [], []
    for vertebra, value, seen, block in zip(spine.vertebrae, label_values(plan), plan.visibility, blocks):
        if not vertebra.labelled or seen == "outside":
            continue
        if value == PARTIAL_LABEL:
            excluded.append({"level": vertebra.level, "label_value": PARTIAL_LABEL,
                             "reason": "vertebral body only partly inside the field of view"})
            continue
        centroid = body_centroid(labels, value, block)
        if centroid is None:
            raise ValueError(f"{vertebra.level} is inside the field of view but no voxel carries its label {value}")
        vertebrae.append(_vertebra_entry(vertebra, value, index_to_lps(affine, centroid)))
    confounders = [dict(record) for record in spine.confounders]
    if acquisition.coverage != "full":
        side = {"superior_partial": "superior", "inferior_partial": "inferior"}.get(acquisition.coverage, "both")
        reason = {"slice_budget": "slice budget", "levels": "requested levels"}.get(acquisition.coverage, "planted")
        confounders.append({"type": "partial_coverage", "side": side, "reason": reason,
                            "levels": [e["level"] for e in excluded]})
    screening = next(s for s in series if s["role"] == "screening")
    patient = spine.patient
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"vcfscreen phantom {__version__}",
        "seed": plan.seed,
        "study_instance_uid": study_uid,
        "series_instance_uid": screening["series_instance_uid"],
        "patient": {"name": patient.name, "id": patient.patient_id, "sex": patient.sex, "age": patient.age,
                    "bone_density": patient.bone_class},
        "acquisition": {
            "patient_position": acquisition.position,
            "rows": acquisition.matrix, "columns": acquisition.matrix, "slices": acquisition.n_slices,
            "pixel_spacing_mm": _r(acquisition.pixel_spacing_mm, 6),
            "slice_thickness_mm": acquisition.thickness_mm,
            "spacing_between_slices_mm": acquisition.spacing_mm,
            "convolution_kernel": acquisition.kernel, "kvp": acquisition.kvp,
            "noise_hu": _r(acquisition.noise_hu, 1),
            "z_range_mm": [_r(acquisition.z_bottom, 2), _r(acquisition.z_top, 2)],
            "coverage": acquisition.coverage,
        },
        "spine": {"thoracic_count": sum(v.region == "T" for v in spine.vertebrae),
                  "lumbar_count": sum(v.region == "L" for v in spine.vertebrae),
                  "transitional_variant": spine.variant} | spine.curve,
        "max_genant_grade": max((v["genant_grade"] for v in vertebrae), default=0),
        "vertebrae": vertebrae,
        "excluded_vertebrae": excluded,
        "confounders": confounders,
        "series": series,
        "labels": {"file": "labels.npz", "key": "labels", "background": 0, "partial_body": PARTIAL_LABEL,
                   "meaning": "value v labels the vertebral body of vertebrae[v-1] (posterior elements unlabelled)"},
    }
