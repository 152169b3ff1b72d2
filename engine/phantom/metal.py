"""Metal implants and their streak artefacts.

A hip prosthesis (cup, head and stem in place of one femoral head and neck) or pedicle
screws joined by rods. Metal is painted far above the HU ceiling (it saturates at 3071
after reconstruction, like real metal), then each slice that holds metal gets radial
bright and dark streaks around it, stronger for more metal in the slice.
"""

from __future__ import annotations

import numpy as np

from engine.phantom.body import BodyPlan
from engine.phantom.grid import Grid, stamp_spheres
from engine.phantom.plan import SpinePlan
from engine.phantom.shapes import paint_indices, smooth_path, tube_indices

METAL_HU = 6000


def paint_metal(canvas: np.ndarray, grid: Grid, spine: SpinePlan, body: BodyPlan, rng: np.random.Generator) -> None:
    """Paint the study's implant (if any) and its streaks."""
    if spine.metal is None:
        return
    if spine.metal["device"] == "hip_prosthesis":
        _hip(canvas, grid, spine, body, spine.metal["side"])
    else:
        _screws(canvas, grid, spine)
    _streaks(canvas, grid, rng)


def _hip(canvas: np.ndarray, grid: Grid, spine: SpinePlan, body: BodyPlan, side_name: str) -> None:
    k = spine.patient.scale
    side = 1.0 if side_name == "left" else -1.0
    fh = body.points["femoral_head"]
    head = np.array([side * abs(fh[0]), fh[1], fh[2]])
    r_head = 23.0 * k
    # cup: a metal hemisphere shell in the acetabulum, opening down and out
    theta, phi = np.meshgrid(np.linspace(0.0, 0.5 * np.pi, 24), np.linspace(0, 2 * np.pi, 64))
    axis = np.array([-side * 0.6, 0.0, 0.8])
    a = np.cross(axis, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(axis, a)
    dirs = np.cos(theta)[..., None] * axis + np.sin(theta)[..., None] * (
        np.cos(phi)[..., None] * a + np.sin(phi)[..., None] * b)
    cup = head + (r_head + 1.5) * dirs.reshape(-1, 3)
    paint_indices(canvas, stamp_spheres(grid, cup, 2.5), METAL_HU)
    paint_indices(canvas, stamp_spheres(grid, head[None], 0.7 * r_head), METAL_HU)
    gt = head + np.array([side * 50.0 * k, 8.0, -28.0 * k])
    shaft = gt + np.array([-side * 6.0, 0.0, -20.0])
    stem = smooth_path(np.array([head, 0.5 * (head + gt), shaft, shaft + [-side * 5.0, -2.0, -110.0]]), 40)
    paint_indices(canvas, tube_indices(grid, stem, np.linspace(8.0, 5.0, len(stem))), METAL_HU)


def _screws(canvas: np.ndarray, grid: Grid, spine: SpinePlan) -> None:
    heads: dict[float, list[np.ndarray]] = {-1.0: [], 1.0: []}
    for vertebra in spine.vertebrae:
        for lesion in vertebra.lesions:
            if lesion.kind != "screw":
                continue
            side = lesion.center[0]
            cu, cv, t = vertebra.canal_half_width, vertebra.canal_half_depth, vertebra.arch
            vc = vertebra.half_depth - vertebra.concavity + cv
            entry = vertebra.to_world(np.array([side * (cu + 0.5 * t + 2.0), vc + 0.4 * cv + 6.0, 0.1 * vertebra.h0]))
            tip = vertebra.to_world(np.array([side * 0.25 * vertebra.half_width, -0.55 * vertebra.half_depth, 0.05 * vertebra.h0]))
            paint_indices(canvas, tube_indices(grid, np.stack([entry, tip]), lesion.radius), METAL_HU)
            direction = (entry - tip) / np.linalg.norm(entry - tip)
            head = entry + 6.0 * direction
            paint_indices(canvas, stamp_spheres(grid, head[None], 6.0), METAL_HU)
            heads[side].append(head)
    for side, points in heads.items():
        if len(points) >= 2:
            rod = smooth_path(np.array(sorted(points, key=lambda p: -p[2])), 30)
            rod = np.concatenate([[rod[0] + (rod[0] - rod[1]) * 3], rod, [rod[-1] + (rod[-1] - rod[-2]) * 3]])
            paint_indices(canvas, tube_indices(grid, rod, 3.0), METAL_HU)


def _streaks(canvas: np.ndarray, grid: Grid, rng: np.random.Generator) -> None:
    """Radial streaks around the metal of each slice (bright and dark, decaying outwards)."""
    ys = grid.ys.astype(np.float32)[:, None]
    xs = grid.xs.astype(np.float32)[None, :]
    spokes = int(rng.integers(6, 12))
    for k in range(grid.shape[0]):
        metal = canvas[k] >= METAL_HU - 1
        count = int(metal.sum())
        if count == 0:
            continue
        rows, cols = np.nonzero(metal)
        cy, cx = float(grid.ys[rows].mean()), float(grid.xs[cols].mean())
        dy, dx = ys - cy, xs - cx
        r = np.sqrt(dx * dx + dy * dy)
        angle = np.arctan2(dy, dx)
        area_mm2 = count * abs(grid.steps[1] * grid.steps[2])
        strength = min(60.0 * np.sqrt(area_mm2 / 20.0), 900.0)
        pattern = (np.cos(spokes * angle + 0.7 * k) + 0.6 * np.cos((2 * spokes + 3) * angle - 0.3 * k))
        delta = strength * pattern * np.exp(-r / 70.0) * (1.0 - np.exp(-r / 6.0))
        body = canvas[k] > -900
        updated = np.clip(canvas[k].astype(np.float32) + delta * body, -1024, 30000)
        canvas[k] = np.where(metal, canvas[k], updated.astype(np.int16))
