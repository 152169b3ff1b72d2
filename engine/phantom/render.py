"""From a seed to a plan, and from a plan to HU and label volumes.

:func:`plan_study` draws everything (spine, body, acquisition, extra series); the
:func:`render` z-buffer paints, in order: trunk and table, back muscles, abdominal organs,
bowel, lungs, mediastinum and vessels, the spinal canal, discs, ribs and other bones, the
vertebrae (bodies labelled), metal, then reconstruction (noise, blur, clipping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from engine.phantom.abdomen import (
    paint_abdominal_vessels,
    paint_bowel,
    paint_solid_organs,
)
from engine.phantom.acquisition import Acquisition, sample_acquisition
from engine.phantom.body import BodyPlan, paint_back_muscles, paint_trunk, sample_body
from engine.phantom.config import PhantomConfig
from engine.phantom.grid import Grid
from engine.phantom.metal import paint_metal
from engine.phantom.plan import SpinePlan, sample_spine_plan
from engine.phantom.recon import paint_table, reconstruct
from engine.phantom.skeleton import (
    paint_pelvis,
    paint_ribs,
    paint_sternum_and_shoulders,
)
from engine.phantom.thorax import paint_breasts, paint_lungs, paint_mediastinum
from engine.phantom.vertebra import paint_canal, paint_disc, paint_vertebra

PARTIAL_LABEL = 255
"""Label of a vertebral body only partly inside the field of view (not in truth; ignore it)."""
PARTIAL_VOLUME_STEP_MM = 0.5
"""Slice spacing painted on with ``PhantomConfig.partial_volume_slices`` (at most)."""


@dataclass
class StudyPlan:
    seed: int
    config: PhantomConfig
    spine: SpinePlan
    body: BodyPlan
    acquisition: Acquisition
    extras: tuple[str, ...]
    visibility: list[str]  # per vertebra: "full", "partial" or "outside"


def _visibility(spine: SpinePlan, grid: Grid, acquisition: Acquisition) -> list[str]:
    """Whether each vertebral body lies fully, partly or not at all in the field of view."""
    z_lo, z_hi = float(grid.zs.min()), float(grid.zs.max())
    half = acquisition.fov_mm / 2.0 - 2.0
    cx, cy = acquisition.center_xy
    out = []
    for vertebra in spine.vertebrae:
        points = vertebra.surface_points()
        in_z = (points[:, 2] >= z_lo) & (points[:, 2] <= z_hi)
        in_plane = (points[:, 0] - cx) ** 2 + (points[:, 1] - cy) ** 2 <= half * half
        inside = in_z & in_plane
        out.append("full" if inside.all() else ("partial" if inside.any() else "outside"))
    return out


def plan_study(seed: int, config: PhantomConfig) -> StudyPlan:
    rng = np.random.default_rng(seed)
    spine = sample_spine_plan(rng, seed, config)
    body = sample_body(rng, spine)
    acquisition = sample_acquisition(rng, config, spine, body)
    extras = tuple(
        role for role, p in (("localizer", config.scout_probability),
                             ("thick_axial", config.thick_series_probability),
                             ("sagittal_reformat", config.sagittal_series_probability))
        if rng.random() < p
    )
    visibility = _visibility(spine, acquisition.grid(), acquisition)
    return StudyPlan(seed=seed, config=config, spine=spine, body=body, acquisition=acquisition,
                     extras=extras, visibility=visibility)


def label_values(plan: StudyPlan) -> list[int]:
    """Label of each vertebra: 1.. for truth vertebrae (top first), 255 partial, 0 none."""
    values, next_value = [], 1
    for vertebra, seen in zip(plan.spine.vertebrae, plan.visibility):
        if not vertebra.labelled or seen == "outside":
            values.append(0)
        elif seen == "partial":
            values.append(PARTIAL_LABEL)
        else:
            values.append(next_value)
            next_value += 1
    return values


def render(plan: StudyPlan) -> tuple[np.ndarray, np.ndarray, list[tuple[slice, slice, slice] | None]]:
    """HU (int16) and label (uint8) volumes in storage order, and each vertebra's block.

    With ``partial_volume_slices`` the study is painted and reconstructed on slices ``factor``
    times finer (the slice profile then averages the anatomy over each slice's thickness), and
    every ``factor``-th slice is kept: the same grid as without, slice for slice.
    """
    factor = _partial_volume_factor(plan)
    if factor == 1:
        return _render_on(plan, plan.acquisition)
    acquisition = plan.acquisition
    fine = replace(acquisition, spacing_mm=acquisition.spacing_mm / factor,
                   n_slices=(acquisition.n_slices - 1) * factor + 1)
    canvas, labels, blocks = _render_on(plan, fine)
    kept = [None if block is None else
            (slice(-(-block[0].start // factor), -(-block[0].stop // factor)), block[1], block[2])
            for block in blocks]
    return np.ascontiguousarray(canvas[::factor]), np.ascontiguousarray(labels[::factor]), kept


def _partial_volume_factor(plan: StudyPlan) -> int:
    """How many painted slices per acquired slice (1: painted on the acquisition's own slices)."""
    if not plan.config.partial_volume_slices:
        return 1
    return max(1, math.ceil(plan.acquisition.spacing_mm / PARTIAL_VOLUME_STEP_MM - 1e-9))


def _render_on(plan: StudyPlan, acquisition: Acquisition) -> tuple[np.ndarray, np.ndarray, list[tuple[slice, slice, slice] | None]]:
    grid = acquisition.grid()
    rng = np.random.default_rng([plan.seed, 1])
    spine, body = plan.spine, plan.body
    canvas = np.empty(grid.shape, dtype=np.int16)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    paint_trunk(canvas, grid, body)
    paint_table(canvas, grid, body)
    paint_back_muscles(canvas, grid, body)
    paint_solid_organs(canvas, grid, body, rng)
    paint_bowel(canvas, grid, body, rng)
    paint_lungs(canvas, grid, body, rng)
    vessels = paint_mediastinum(canvas, grid, body, rng)
    paint_abdominal_vessels(canvas, grid, body, rng, vessels["blood_hu"], vessels["aorta_nodes"])
    if body.female:
        paint_breasts(canvas, grid, body, rng)
    paint_canal(canvas, grid, spine.vertebrae)
    for disc in spine.discs:
        paint_disc(canvas, grid, spine.vertebrae[disc.upper], spine.vertebrae[disc.lower], disc,
                   seed=int(rng.integers(2 ** 31)))
    paint_ribs(canvas, grid, spine, body, rng)
    paint_sternum_and_shoulders(canvas, grid, spine, body, rng)
    paint_pelvis(canvas, grid, spine, body, rng)
    blocks = []
    for vertebra, value in zip(spine.vertebrae, label_values(plan)):
        blocks.append(paint_vertebra(canvas, labels, grid, vertebra, value, seed=int(rng.integers(2 ** 31))))
    paint_metal(canvas, grid, spine, body, rng)
    reconstruct(canvas, grid, acquisition, body, seed=int(rng.integers(2 ** 31)))
    return canvas, labels, blocks
