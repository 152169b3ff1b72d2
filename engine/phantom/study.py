"""The public face of the phantom generator: one seed in, one study out.

:func:`generate_study` renders in memory (training and tests use it without touching
disk); :func:`write_study` writes the contract layout: ``OUT/<StudyInstanceUID>/`` with one
DICOM file per image of every series, ``truth.json`` and ``labels.npz``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.phantom.config import PhantomConfig
from engine.phantom.dicom_out import TRANSFER_SYNTAXES, study_attributes, write_series
from engine.phantom.render import StudyPlan, plan_study, render
from engine.phantom.series import (
    SeriesData,
    localizer_series,
    phantom_uid,
    sagittal_series,
    screening_series,
    thick_series,
)
from engine.phantom.truth import build_truth
from engine.volume import Volume


@dataclass
class PhantomStudy:
    """A rendered study: the screening volume, its body labels, truth and every series."""

    volume: Volume
    labels: np.ndarray
    truth: dict[str, Any]
    series: list[SeriesData]
    plan: StudyPlan = field(repr=False)

    @property
    def study_instance_uid(self) -> str:
        return self.volume.study_instance_uid

    @property
    def extra_series(self) -> list[SeriesData]:
        return [s for s in self.series if s.role != "screening"]


def _numbers(roles: tuple[str, ...], seed: int) -> dict[str, int]:
    """Series numbers in scanner order: scout first, then the reconstructions, reformat last."""
    order = ["localizer"] + (["thick_axial", "screening"] if seed % 2 else ["screening", "thick_axial"])
    order.append("sagittal_reformat")
    present = [role for role in order if role == "screening" or role in roles]
    return {role: (601 if role == "sagittal_reformat" else i + 1) for i, role in enumerate(present)}


def generate_study(seed: int, config: PhantomConfig | None = None) -> PhantomStudy:
    """Render the study of ``seed`` drawn from ``config`` (defaults: clinical TAP CT)."""
    if seed < 0:
        raise ValueError(f"a phantom seed must be a non-negative integer; got {seed}")
    config = config or PhantomConfig()
    plan = plan_study(seed, config)
    hu, labels, blocks = render(plan)
    acquisition = plan.acquisition
    grid = acquisition.grid()
    study_uid = phantom_uid(seed, "study")
    volume = Volume(
        hu=hu, affine=grid.affine(), study_instance_uid=study_uid,
        series_instance_uid=phantom_uid(seed, "series", "screening"),
        meta={"thickness_mm": acquisition.thickness_mm, "kernel": acquisition.kernel, "kvp": acquisition.kvp,
              "patient_position": acquisition.position, "manufacturer": "vcfscreen phantom"},
    )
    numbers = _numbers(plan.extras, seed)
    series = [screening_series(volume, seed, numbers["screening"], acquisition.thickness_mm, acquisition.spacing_mm)]
    if "localizer" in plan.extras:
        series.append(localizer_series(volume, seed, numbers["localizer"], lateral=bool(seed % 3 == 0)))
    if "thick_axial" in plan.extras:
        series.append(thick_series(volume, seed, numbers["thick_axial"], acquisition.spacing_mm))
    if "sagittal_reformat" in plan.extras:
        spine_x = float(np.median([v.center[0] for v in plan.spine.vertebrae if v.region in "TL"]))
        series.append(sagittal_series(volume, seed, numbers["sagittal_reformat"], spine_x))
    series.sort(key=lambda s: s.series_number)
    truth = build_truth(plan, labels, volume.affine, blocks, study_uid, [s.record() for s in series])
    return PhantomStudy(volume=volume, labels=labels, truth=truth, series=series, plan=plan)


def write_study(study: PhantomStudy, out_dir: str | Path, transfer_syntax: str = "explicit") -> Path:
    """Write ``out_dir/<StudyInstanceUID>/`` (DICOM files, truth.json, labels.npz); returns it."""
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer syntax {transfer_syntax!r}; choose one of {sorted(TRANSFER_SYNTAXES)}")
    folder = Path(out_dir) / study.study_instance_uid
    folder.mkdir(parents=True, exist_ok=True)
    plan = study.plan
    shared = study_attributes(plan.seed, study.study_instance_uid, plan.spine.patient, plan.acquisition)
    for series in study.series:
        write_series(series, folder, shared, plan.seed, plan.acquisition.signed, transfer_syntax)
    truth = dict(study.truth)
    truth["transfer_syntax"] = str(TRANSFER_SYNTAXES[transfer_syntax])
    (folder / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    np.savez_compressed(folder / "labels.npz", labels=study.labels)
    return folder
