"""Bones other than the vertebrae: ribs, sternum, shoulder girdle, sacral alae, pelvis, femora.

Ribs are tied to the thoracic vertebrae: one pair per thoracic vertebra (so 11 or 13 pairs
with a transitional spine), each starting at its vertebra's body and transverse process
and sweeping around the chest wall, dropping as it goes forward; the upper ones end in
costal cartilage at the sternum, the last two float. Bones are painted as a cortical
shell (the outer stamp) with marrow inside (the inner stamp).
"""

from __future__ import annotations

import numpy as np

from engine.phantom.body import BodyPlan
from engine.phantom.grid import Grid, stamp_spheres
from engine.phantom.plan import SpinePlan
from engine.phantom.shapes import (
    paint_indices,
    paint_tubes,
    paint_vertical_tube,
    smooth_path,
    tube_indices,
)
from engine.phantom.thorax import cavity_at, cavity_point


def _bone_tube(canvas, grid, points, radius, cortical, marrow, cortex=1.3):
    radius = np.broadcast_to(np.asarray(radius, dtype=float), (len(points),))
    paint_indices(canvas, tube_indices(grid, points, radius), cortical)
    inner = radius - cortex
    if inner.min() > 0.6:
        paint_indices(canvas, tube_indices(grid, points, inner), marrow)


def _rib_path(spine: SpinePlan, body: BodyPlan, index: int, count: int, side: float, vertebra) -> tuple[np.ndarray, np.ndarray]:
    """(bony rib points, cartilage points) of rib ``index`` (1-based) on one side."""
    k = spine.patient.scale
    h = vertebra.posterior
    head = vertebra.to_world(np.array([side * 0.8 * vertebra.half_width, 0.45 * vertebra.half_depth, 0.3 * h]))
    reach = vertebra.canal_half_width + vertebra.arch + vertebra.transverse_length * 0.9
    tubercle = vertebra.to_world(np.array([side * reach, vertebra.half_depth + vertebra.canal_half_depth
                                           + 0.45 * vertebra.transverse_length, 0.15 * h]))
    floating = index >= count - 1
    drop = k * (18.0 + 52.0 * min(index, 7) / 7.0) if not floating else 35.0 * k
    beta_end = np.interp(index, [1, 7, count - 2, count], [2.5, 2.3, 2.05, 1.45]) if count > 3 else 2.3
    width = float(np.interp(index, [1, 2, 3, 4, 6, count], [0.5, 0.68, 0.8, 0.88, 0.97, 0.97]))
    beta = np.linspace(0.0, 1.0, 28)
    z = tubercle[2] - 4.0 - drop * beta ** 1.3
    c = cavity_at(body, z)
    half_w = (c["half_width"] - 2.0) * width
    y_back = c["spine_y"] + c["lamina"] + 12.0
    y_front = c["y_front"] - 2.0
    cy, half_d = 0.5 * (y_front + y_back), 0.5 * (y_back - y_front) * (0.55 + 0.45 * width)
    cy = y_back - half_d
    start = np.arcsin(np.clip(abs(tubercle[0] - c["cx"][0]) / half_w[0], 0.05, 0.95)) + 0.12
    angle = start + (beta_end - start) * beta
    x = c["cx"] + side * half_w * np.sin(angle)
    y = cy + half_d * np.cos(angle)
    shaft = np.stack([x, y, z], axis=1)
    bony = smooth_path(np.concatenate([[head, tubercle], shaft[::3]]), 60)
    cartilage = np.zeros((0, 3))
    if not floating:
        end_angle = 2.95 if index <= 7 else 2.55
        tail = np.linspace(beta_end, end_angle, 8)
        z_end = z[-1] + (0.0 if index <= 7 else 12.0 * (index - 6))
        zt = np.linspace(z[-1], z_end, 8)
        ct = cavity_at(body, zt)
        hw = (ct["half_width"] - 2.0) * width
        yb = ct["spine_y"] + ct["lamina"] + 12.0
        hd = 0.5 * (yb - (ct["y_front"] - 2.0)) * (0.55 + 0.45 * width)
        cartilage = np.stack([ct["cx"] + side * hw * np.sin(tail), yb - hd + hd * np.cos(tail), zt], axis=1)
    return bony, cartilage


def paint_ribs(canvas: np.ndarray, grid: Grid, spine: SpinePlan, body: BodyPlan, rng: np.random.Generator) -> None:
    """One rib pair per thoracic vertebra: cortical tubes with marrow, then cartilages."""
    thoracic = [v for v in spine.vertebrae if v.ribs]
    count = len(thoracic)
    outer, inner, cartilages = [], [], []
    for index, vertebra in enumerate(thoracic, start=1):
        radius = (5.5 if index <= 2 else (3.6 if index >= count - 1 else 4.6)) * spine.patient.scale
        for side in (-1.0, 1.0):
            bony, cartilage = _rib_path(spine, body, index, count, side, vertebra)
            outer.append((bony, radius, vertebra.cortical_hu))
            inner.append((bony, radius - vertebra.cortex_mm - 0.3, vertebra.cancellous_hu + 20.0))
            if len(cartilage):
                cartilages.append((cartilage, 4.5, rng.uniform(90.0, 160.0)))
    paint_tubes(canvas, grid, outer)
    paint_tubes(canvas, grid, inner)
    paint_tubes(canvas, grid, cartilages)


def paint_sternum_and_shoulders(canvas: np.ndarray, grid: Grid, spine: SpinePlan, body: BodyPlan,
                                rng: np.random.Generator) -> None:
    lm = body.landmarks
    by_level = {v.level: v for v in spine.vertebrae}
    cortical, marrow = by_level["T6"].cortical_hu, by_level["T6"].cancellous_hu + 30.0
    z_top, z_angle, z_low = lm["z_T1"] - 12.0, lm["z_T4"] - 5.0, lm["z_T8"] - 20.0
    nodes_outer, nodes_inner = [], []
    for z, half_w in ((z_top, 27.0), (z_angle, 20.0), (0.5 * (z_angle + z_low), 15.0), (z_low, 12.0)):
        c = cavity_point(body, z)
        y = c["y_front"] - 4.0
        nodes_outer.append((c["cx"], y, z, half_w, 6.5))
        nodes_inner.append((c["cx"], y, z, half_w - 1.5, 5.0))
    paint_vertical_tube(canvas, grid, np.array(nodes_outer), cortical * 0.8)
    paint_vertical_tube(canvas, grid, np.array(nodes_inner), marrow)
    # clavicles: from the manubrium up and out towards the raised shoulders
    c_top = cavity_point(body, z_top)
    p_top = {k: float(v[0]) for k, v in body.at(np.array([lm["z_T1"]])).items()}
    for side in (-1.0, 1.0):
        clavicle = smooth_path(np.array([
            [c_top["cx"] + side * 24.0, c_top["y_front"] - 6.0, z_top + 4.0],
            [c_top["cx"] + side * 65.0, c_top["y_front"] - 2.0, z_top + 18.0],
            [c_top["cx"] + side * 0.75 * p_top["a"], c_top["y_front"] + 30.0, z_top + 28.0],
        ]), 24)
        in_body = lambda values: values > -900
        paint_indices(canvas, tube_indices(grid, clavicle, 6.5), cortical, within=in_body)
        paint_indices(canvas, tube_indices(grid, clavicle, 5.0), marrow, within=in_body)
        _scapula(canvas, grid, body, side, cortical, marrow)


def _scapula(canvas, grid, body: BodyPlan, side: float, cortical: float, marrow: float) -> None:
    """A thin curved blade behind the upper ribs, with a thicker lateral border and spine."""
    lm = body.landmarks
    zs = np.linspace(lm["z_T1"] + 5.0, lm["z_T8"] + 5.0, 28)
    c = cavity_at(body, zs)
    p = body.at(zs)
    back = p["y_back"] - p["fat_back"] - 14.0
    length = np.linspace(0.0, 1.0, 22)
    taper = np.clip((zs - lm["z_T8"]) / (lm["z_T1"] - lm["z_T8"]), 0.0, 1.0)
    medial = c["spine_x"] + side * (45.0 + 10.0 * taper)
    lateral = c["cx"] + side * (0.55 + 0.3 * taper) * p["a"]
    xs = medial[:, None] + (lateral - medial)[:, None] * length[None, :]
    ys = back[:, None] - 35.0 * length[None, :] ** 1.6
    pts = np.stack([xs, ys, np.broadcast_to(zs[:, None], xs.shape)], axis=-1).reshape(-1, 3)
    soft = lambda v: v > -300
    paint_indices(canvas, stamp_spheres(grid, pts, 2.2), cortical * 0.85, within=soft)
    border = np.stack([xs[:, -1], ys[:, -1], zs], axis=1)
    _bone_tube(canvas, grid, border, 5.0, cortical, marrow)
    k = int(len(zs) * 0.2)
    ridge = np.stack([xs[k], ys[k] + 8.0, np.full(xs.shape[1], zs[k])], axis=1)
    _bone_tube(canvas, grid, ridge, 5.0, cortical, marrow)


def paint_pelvis(canvas: np.ndarray, grid: Grid, spine: SpinePlan, body: BodyPlan, rng: np.random.Generator) -> None:
    """Sacral alae, iliac wings, acetabula, pubic and ischial rami, femora."""
    k = spine.patient.scale
    s1 = spine.vertebra("S1")
    cortical, marrow = s1.cortical_hu, s1.cancellous_hu + 15.0
    for level, length in (("S1", 42.0), ("S2", 36.0), ("S3", 24.0)):
        _ala(canvas, grid, spine.vertebra(level), length * k, cortical, marrow)
    lm = body.landmarks
    fh = body.points["femoral_head"]
    sym = body.points["symphysis"]
    s1_top = body.points["s1_top"]
    r_head = 23.0 * k
    z_crest = lm["z_crest"]
    for side in (-1.0, 1.0):
        fx = side * abs(fh[0])
        span = abs(fh[0]) + rng.uniform(25.0, 40.0) * k
        crest = smooth_path(np.array([
            [side * (s1.half_width + 38.0), s1_top[1] + 38.0, z_crest - 22.0],
            [side * (span - 10.0), fh[1] + 25.0, z_crest],
            [side * span, fh[1] - 20.0, z_crest - 20.0],
            [side * (span - 8.0), fh[1] - 48.0, lm["z_fh"] + 55.0 * k],
        ]), 24)
        lower = smooth_path(np.array([
            [side * (s1.half_width + 26.0), s1_top[1] + 40.0, s1_top[2] - 55.0 * k],
            [side * (abs(fh[0]) - 4.0), fh[1] + 18.0, fh[2] + r_head + 8.0],
            [side * (abs(fh[0]) + 4.0), fh[1] - 10.0, fh[2] + r_head + 6.0],
            [side * (abs(fh[0]) + 4.0), fh[1] - 34.0, fh[2] + 30.0],
        ]), 24)
        u = np.linspace(0.0, 1.0, len(crest))[:, None]
        v = np.linspace(0.0, 1.0, 18)[None, :]
        surface = crest[:, None, :] * (1 - v[..., None]) + lower[:, None, :] * v[..., None]
        surface[..., 0] += side * 10.0 * np.sin(np.pi * u) * np.sin(np.pi * v)
        radius = np.clip(3.0 + 4.0 * (1 - v) ** 6 + 9.0 * (1 - u) ** 3 + 8.0 * v ** 3, 3.0, 13.0)
        pts, rad = surface.reshape(-1, 3), np.broadcast_to(radius, surface.shape[:2]).reshape(-1)
        paint_indices(canvas, stamp_spheres(grid, pts, rad), cortical)
        paint_indices(canvas, stamp_spheres(grid, pts, np.maximum(rad - 1.6, 0.0)), marrow)
        # acetabulum: a thick cup over the medial and upper part of the femoral head
        theta, phi = np.meshgrid(np.linspace(0.0, 0.62 * np.pi, 28), np.linspace(0, 2 * np.pi, 64))
        cup_dir = np.array([-side * 0.55, 0.0, 0.83])
        basis_a = np.cross(cup_dir, [0.0, 1.0, 0.0])
        basis_a /= np.linalg.norm(basis_a)
        basis_b = np.cross(cup_dir, basis_a)
        dirs = (np.cos(theta)[..., None] * cup_dir + np.sin(theta)[..., None]
                * (np.cos(phi)[..., None] * basis_a + np.sin(phi)[..., None] * basis_b))
        cup = np.array([fx, fh[1], fh[2]]) + (r_head + 7.0) * dirs.reshape(-1, 3)
        paint_indices(canvas, stamp_spheres(grid, cup, 5.0), cortical)
        paint_indices(canvas, stamp_spheres(grid, cup, 3.2), marrow)
        tuberosity = np.array([side * abs(fh[0]) * 0.62, fh[1] + 24.0, fh[2] - 50.0 * k])
        for path, r in (
            ([[fx - side * 12.0, fh[1] - 22.0, fh[2] - 6.0], [side * 22.0, sym[1] + 4.0, sym[2] + 10.0],
              [side * 6.0, sym[1], sym[2]]], 9.0),
            ([[side * 6.0, sym[1] + 4.0, sym[2] - 6.0], [side * 25.0, sym[1] + 20.0, sym[2] - 28.0],
              tuberosity.tolist()], 7.0),
            ([[fx - side * 4.0, fh[1] + 18.0, fh[2] - 14.0], tuberosity.tolist()], 12.0),
        ):
            _bone_tube(canvas, grid, smooth_path(np.array(path, dtype=float), 20), r * k, cortical, marrow)
        _femur(canvas, grid, np.array([fx, fh[1], fh[2]]), side, r_head, k, cortical, marrow, rng)


def _ala(canvas: np.ndarray, grid: Grid, vertebra, length: float, cortical: float, marrow: float) -> None:
    """A sacral ala: a wing from the side of a sacral body out to the sacroiliac joint,
    tapering in height and receding anteriorly as it goes out."""
    h, ru, rv = vertebra.h0, vertebra.half_width, vertebra.half_depth
    low = np.array([-(0.5 * ru + length), -rv, -0.5 * h])
    high = np.array([0.5 * ru + length, rv + 8.0, 0.5 * h])
    corners = np.array([[a, b, c] for a in (low[0], high[0]) for b in (low[1], high[1]) for c in (low[2], high[2])])
    world = vertebra.to_world(corners)
    box = grid.box(world.min(axis=0), world.max(axis=0))
    if box is None:
        return
    d = (box.x - np.float32(vertebra.center[0]), box.y - np.float32(vertebra.center[1]),
         box.z - np.float32(vertebra.center[2]))
    f = vertebra.frame.astype(np.float32)
    u, v, w = (d[0] * f[0, i] + d[1] * f[1, i] + d[2] * f[2, i] for i in range(3))
    out = np.clip((np.abs(u) - 0.5 * ru) / length, -1.0, 2.0)
    half_h = h * (0.42 - 0.17 * np.clip(out, 0.0, 1.0))
    front = -0.8 * rv + 0.35 * rv * np.clip(out, 0.0, 1.0)
    back = rv + 6.0 - 4.0 * np.clip(out, 0.0, 1.0)
    wing = (out >= -0.2) & (out <= 1.0) & (np.abs(w + 0.05 * h) <= half_h) & (v >= front) & (v <= back)
    inner = wing & (np.abs(w + 0.05 * h) <= half_h - 1.5) & (v >= front + 1.5) & (v <= back - 1.5) & (out <= 0.96)
    block = canvas[box.slices]
    block[wing] = np.int16(cortical)
    block[inner] = np.int16(marrow)


def _femur(canvas, grid, head, side, r_head, k, cortical, marrow, rng) -> None:
    gt = head + np.array([side * 50.0 * k, 8.0, -28.0 * k])
    paint_indices(canvas, stamp_spheres(grid, head[None], r_head), cortical * 0.8)
    paint_indices(canvas, stamp_spheres(grid, head[None], r_head - 1.5), marrow + 40.0)
    _bone_tube(canvas, grid, np.stack([head, gt]), 15.0 * k, cortical, marrow)
    paint_indices(canvas, stamp_spheres(grid, (gt + [side * 6.0, 6.0, 6.0])[None], 18.0 * k), cortical * 0.8)
    paint_indices(canvas, stamp_spheres(grid, (gt + [side * 6.0, 6.0, 6.0])[None], 16.5 * k), marrow)
    shaft_top = gt + np.array([-side * 6.0, 0.0, -20.0])
    shaft = np.stack([shaft_top, shaft_top + np.array([-side * 25.0, -8.0, -400.0])])
    _bone_tube(canvas, grid, shaft, 14.0 * k, cortical * 1.2, rng.uniform(-40.0, 40.0), cortex=5.0)
    lesser = gt + np.array([-side * 22.0, 14.0, -42.0 * k])
    paint_indices(canvas, stamp_spheres(grid, lesser[None], 8.0 * k), cortical * 0.8)
