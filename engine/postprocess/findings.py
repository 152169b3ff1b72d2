"""From per-vertebra masks and classifier outputs to the findings of a ScreeningResult.

The order of the work, for one study: centroids of every labelled body -> the spine axis at
each (from its neighbours) -> heights (:mod:`.morphometry`) -> height loss and morphometric
grade over the whole spine (:mod:`.grading`) -> fusion with the classifier (:mod:`.fusion`)
-> :class:`engine.results.VertebraFinding`. Build the study's result with
``ScreeningResult.from_findings(...)``, which computes the flag and the maximum grade.

A body that cannot be measured (degenerate mask, or reaching the edge of the array, where
its heights would read as a collapse) keeps its finding: its grade then comes from the
classifier alone, and its notes say why. A body the scan's first or last slice cuts
(``cut_by_scan``, found by :func:`engine.postprocess.levels.cut_by_scan`) is reported but not
graded: neither its heights nor a crop of half a body say anything about a fracture (on
development phantoms such bodies gave 8 of the 12 false positives of grade >= 2). C1, C2
and S1 (:data:`.grading.NOT_GRADED`) are reported with their centroid and the classifier's
probability but always grade 0 (``decided_by = "not_graded"``): they have no ordinary
body, and a sacral fracture is not a vertebral compression fracture.

A body holding metal or cement (``metal_mm3`` at least ``GradingSettings.metal_body_mm3``,
found by :func:`engine.postprocess.metal.dense_volume_mm3`) is not measured either: its
outline follows the implant and its streaks, not the bone. On the phantoms of four held-out
sets (376 studies) 20 of the 35 normal bodies with pedicle screws measured a grade >= 2
height loss; the classifier confirmed 3 of them, all three then graded 2-3. On 60 phantoms
with an implant in each (32 with screws), 40 of 70 screwed normal bodies measured grade >= 2.
Such a body is graded by the classifier alone, and it is not a neighbour of reference for
the bodies beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.postprocess.fusion import ClassifierOutput, fuse
from engine.postprocess.grading import NOT_GRADED, Deformity, grade_spine
from engine.postprocess.morphometry import (
    BodyMeasurement,
    MeasurementError,
    anterior_direction,
    image_resolves_body,
    image_resolves_endplates,
    mask_centroid,
    measure_body,
    spine_axes,
)
from engine.results import HeightsMm, VertebraFinding, level_index
from engine.settings import GradingSettings


@dataclass(frozen=True)
class VertebraInput:
    """One labelled vertebral body of a study.

    ``mask`` is its segmentation (bool, or probabilities in [0, 1]) on a grid that holds
    the whole body with a margin: the model grid itself, or a crop padded by a few voxels.
    A body touching the edge of ``mask`` counts as cut by the field of view.
    """

    level: str
    mask: np.ndarray
    affine: np.ndarray
    classifier: ClassifierOutput
    cut_by_scan: bool = False
    """The scan's first or last slice cuts this body: reported, not graded."""
    metal_mm3: float = 0.0
    """Volume of metal or cement (from the original HU volume) inside this body's mask."""


def findings_from_vertebrae(
    vertebrae: Sequence[VertebraInput],
    settings: GradingSettings,
    hu: np.ndarray | None = None,
    hu_affine: np.ndarray | None = None,
) -> list[VertebraFinding]:
    """The findings of one study, cranial to caudal. Raises ValueError on repeated levels
    or a body with an empty mask (the caller passes only labels that are present).

    With the study's original HU volume (``hu`` and its index -> LPS ``hu_affine``), the
    heights are read between the endplate edges of the image, the masks guiding where to look
    (:func:`engine.postprocess.morphometry.measure_body`); without it, or when its voxels are
    too coarse (:func:`~engine.postprocess.morphometry.image_resolves_endplates`), from the
    masks alone; a body spanning fewer than six of the image's slices is measured on its mask
    (:func:`~engine.postprocess.morphometry.image_resolves_body`)."""
    ordered = sorted(vertebrae, key=lambda v: level_index(v.level))
    levels = [v.level for v in ordered]
    repeated = sorted({lv for lv in levels if levels.count(lv) > 1}, key=level_index)
    if repeated:
        raise ValueError(f"each level may be given once; repeated: {', '.join(repeated)}")
    if not ordered:
        return []
    centroids = []
    for vertebra in ordered:
        try:
            centroids.append(mask_centroid(vertebra.mask, vertebra.affine))
        except MeasurementError as exc:
            raise ValueError(f"{vertebra.level}: {exc}") from None
    axes = spine_axes(np.array(centroids))
    if hu is None or hu_affine is None or not image_resolves_endplates(hu_affine):
        hu = hu_affine = None

    measured: dict[str, BodyMeasurement] = {}
    problems: dict[str, str] = {}
    for vertebra, axis in zip(ordered, axes):
        if vertebra.level in NOT_GRADED or vertebra.cut_by_scan:
            continue
        if vertebra.metal_mm3 >= settings.metal_body_mm3:
            problems[vertebra.level] = (
                f"not measured: {vertebra.metal_mm3:.0f} mm^3 of metal or cement in the body "
                "(its outline follows the implant, not the bone)"
            )
            continue
        try:
            measurement = measure_body(
                vertebra.mask, vertebra.affine, axis, anterior_direction(axis), hu, hu_affine
            )
            if hu is not None and not image_resolves_body(hu_affine, measurement.posterior_mm):
                measurement = measure_body(vertebra.mask, vertebra.affine, axis, anterior_direction(axis))
        except MeasurementError as exc:
            problems[vertebra.level] = f"not measured: {exc}"
            continue
        if measurement.touches_border:
            problems[vertebra.level] = "not measured: the body reaches the edge of the volume"
            continue
        measured[vertebra.level] = measurement
    deformities = grade_spine({lv: m for lv, m in measured.items()}, settings)

    findings = []
    for vertebra, centroid in zip(ordered, centroids):
        level = vertebra.level
        measurement = measured.get(level)
        deformity = deformities.get(level)
        findings.append(_finding(level, centroid, measurement, deformity, vertebra.classifier,
                                 problems.get(level), settings, vertebra.cut_by_scan))
    return findings


def _finding(
    level: str,
    centroid: np.ndarray,
    measurement: BodyMeasurement | None,
    deformity: Deformity | None,
    classifier: ClassifierOutput,
    problem: str | None,
    settings: GradingSettings,
    cut_by_scan: bool = False,
) -> VertebraFinding:
    if level in NOT_GRADED or cut_by_scan:
        note = (f"{level} is not graded: the scan's first or last slice cuts its body" if level not in NOT_GRADED
                else f"{level} is not graded: no ordinary vertebral body")
        return VertebraFinding(
            level=level,
            centroid_lps_mm=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
            fracture_probability=classifier.fracture_probability,
            genant_grade=0,
            height_loss=0.0,
            classifier_grade=classifier.grade,
            classifier_probability=classifier.fracture_probability,
            decided_by="not_graded",
            notes=(note,),
        )
    graded = deformity is not None
    fused = fuse(deformity, classifier, settings)
    notes = list(deformity.notes if deformity is not None else ())
    if problem:
        notes.append(problem)
    notes.extend(fused.notes)
    heights = None
    if measurement is not None:
        centroid = np.asarray(measurement.centroid_lps_mm)
        heights = HeightsMm(
            anterior=measurement.anterior_mm,
            middle=measurement.middle_mm,
            posterior=measurement.posterior_mm,
            expected=deformity.expected_mm if deformity is not None else None,
        )
    return VertebraFinding(
        level=level,
        centroid_lps_mm=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
        fracture_probability=fused.fracture_probability,
        genant_grade=fused.genant_grade,
        height_loss=deformity.height_loss if graded else 0.0,
        morphometric_grade=deformity.grade if graded else None,
        classifier_grade=fused.classifier_grade,
        classifier_probability=fused.classifier_probability,
        heights_mm=heights,
        morphology=deformity.morphology if graded else "none",  # type: ignore[arg-type]
        decided_by=fused.decided_by,
        notes=tuple(notes),
    )
