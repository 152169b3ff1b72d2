"""Painting vertebrae and discs into the canvas, and vertebral bodies into the labels.

Each vertebra is evaluated in its own frame over the block that holds it: the body (cortical
shell, cancellous core with texture, basivertebral vein, lesions) is labelled; the
posterior elements (pedicles and laminae as an arch around the canal, spinous and
transverse processes, articular processes) are bone but not labelled, as the contract asks.
Discs are painted first, as the space between two endplate surfaces, so they follow
wedged and concave endplates exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from engine.phantom.grid import Box, Grid
from engine.phantom.shapes import paint_tube, smooth_path
from engine.phantom.spine import Vertebra

CSF_HU = 12.0


@dataclass
class Disc:
    """The disc between ``upper`` and ``lower`` (indices into the vertebra list)."""

    upper: int
    lower: int
    height: float
    kind: str = "normal"  # "normal", "degenerated" or "fused"
    vacuum: bool = False

    def name(self, vertebrae: list[Vertebra]) -> str:
        return f"{vertebrae[self.upper].level}/{vertebrae[self.lower].level}"


def mean_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The frame halfway between two frames (columns e_u, e_v, e_w)."""
    e_w = a[:, 2] + b[:, 2]
    e_w /= np.linalg.norm(e_w)
    e_u = a[:, 0] + b[:, 0]
    e_u -= e_w * (e_u @ e_w)
    e_u /= np.linalg.norm(e_u)
    return np.stack([e_u, np.cross(e_w, e_u), e_w], axis=1)


def _local(box: Box, center: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local (u, v, w) coordinates (float32, full block shape) of a block's voxels."""
    dx, dy, dz = box.x - np.float32(center[0]), box.y - np.float32(center[1]), box.z - np.float32(center[2])
    f = frame.astype(np.float32)
    u = dx * f[0, 0] + dy * f[1, 0] + dz * f[2, 0]
    v = dx * f[0, 1] + dy * f[1, 1] + dz * f[2, 1]
    w = dx * f[0, 2] + dy * f[1, 2] + dz * f[2, 2]
    return u, v, w


def _box_around(grid: Grid, center: np.ndarray, frame: np.ndarray, low: np.ndarray, high: np.ndarray) -> Box | None:
    corners = np.array([[a, b, c] for a in (low[0], high[0]) for b in (low[1], high[1]) for c in (low[2], high[2])])
    world = corners @ frame.T + center
    return grid.box(world.min(axis=0), world.max(axis=0))


def _erosion_element(grid: Grid, depth_mm: float) -> np.ndarray:
    """A structuring element that peels about ``depth_mm`` off a mask on this grid."""
    reach = np.maximum(np.round(depth_mm / np.abs(grid.steps)), 0).astype(int)
    element = np.zeros(tuple(2 * r + 1 for r in reach), dtype=bool)
    center = tuple(reach)
    element[center] = True
    for axis, r in enumerate(reach):
        for step in range(1, r + 1):
            for sign in (-1, 1):
                at = list(center)
                at[axis] += sign * step
                element[tuple(at)] = True
    return element


def _texture(u: np.ndarray, v: np.ndarray, w: np.ndarray, seed: int, amplitude: float) -> np.ndarray:
    """Trabecular-like texture: a few random plane waves of 3-8 mm wavelength."""
    rng = np.random.default_rng(seed)
    total = np.zeros(np.broadcast_shapes(u.shape, v.shape, w.shape), dtype=np.float32)
    for _ in range(5):
        direction = rng.normal(size=3)
        direction *= 2 * np.pi / rng.uniform(3.0, 8.0) / np.linalg.norm(direction)
        phase = rng.uniform(0, 2 * np.pi)
        total += np.cos(u * np.float32(direction[0]) + v * np.float32(direction[1])
                        + w * np.float32(direction[2]) + np.float32(phase))
    return total * np.float32(amplitude / np.sqrt(2.5))


def paint_disc(canvas: np.ndarray, grid: Grid, upper: Vertebra, lower: Vertebra, disc: Disc, seed: int) -> None:
    """The disc: between the upper body's inferior and the lower body's superior endplate."""
    center = 0.5 * (upper.center + lower.center)
    frame = mean_frame(upper.frame, lower.frame)
    ru = 1.03 * 0.5 * (upper.half_width + lower.half_width)
    rv = 1.03 * 0.5 * (upper.half_depth + lower.half_depth)
    half = 0.5 * np.linalg.norm(upper.center - lower.center)
    box = _box_around(grid, center, frame, np.array([-ru, -rv, -half]), np.array([ru, rv, half]))
    if box is None:
        return
    ud, vd, _ = _local(box, center, frame)
    uu, vu, wu = _local(box, upper.center, upper.frame)
    ul, vl, wl = _local(box, lower.center, lower.frame)
    w_bot_upper, _ = upper.endplates(uu, vu)
    _, w_top_lower = lower.endplates(ul, vl)
    concave = np.float32(0.5 * (upper.concavity + lower.concavity))
    v_eff = vd + np.where(vd > 0, concave * np.maximum(0.0, 1.0 - (ud / np.float32(ru)) ** 2), 0.0)
    radial = (ud / np.float32(ru)) ** 2 + (v_eff / np.float32(rv)) ** 2
    mask = (radial <= 1.0) & (wu <= w_bot_upper + 0.3) & (wl >= w_top_lower - 0.3)
    block = canvas[box.slices]
    if disc.kind == "fused":
        bone = 0.5 * (upper.cancellous_hu + lower.cancellous_hu) + 80.0
        values = np.full(block.shape, bone, dtype=np.float32)
        values[radial > 0.85] = 0.5 * (upper.cortical_hu + lower.cortical_hu)
    else:
        values = np.where(radial < 0.35, np.float32(72.0), np.float32(96.0))
        if disc.kind == "degenerated":
            values = values + np.float32(12.0)
            if disc.vacuum:
                gas = (ud / (0.45 * ru)) ** 2 + (vd / (0.4 * rv)) ** 2 < 1.0
                wobble = _texture(ud, vd, wl, seed, 1.0)
                values = np.where(gas & (wobble > -0.3), np.float32(-650.0), values)
    block[mask] = values[mask].astype(np.int16)


def _body(vertebra: Vertebra, u: np.ndarray, v: np.ndarray, w: np.ndarray):
    """Body mask, the depth inside its surface (mm) and the endplate surfaces."""
    w_bot, w_top = vertebra.endplates(u, v)
    half_h = np.float32(0.5 * vertebra.posterior)
    squeeze = 1.0 - np.float32(vertebra.waist) * np.maximum(0.0, 1.0 - (w / half_h) ** 2)
    ru, rv = np.float32(vertebra.half_width) * squeeze, np.float32(vertebra.half_depth) * squeeze
    indent = np.float32(vertebra.concavity) * np.maximum(0.0, 1.0 - (u / np.float32(vertebra.half_width)) ** 2)
    v_eff = v + np.where(v > 0, indent, np.float32(0.0))
    radial = np.sqrt((u / ru) ** 2 + (v_eff / rv) ** 2)
    inside = (radial <= 1.0) & (w >= w_bot) & (w <= w_top)
    depth_side = (1.0 - radial) * np.minimum(ru, rv)
    depth_top, depth_bot = w_top - w, w - w_bot
    return inside, depth_side, depth_top, depth_bot, v_eff, w_bot, w_top


def _posterior_elements(vertebra: Vertebra, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mask of pedicles, laminae, spinous, transverse and articular processes."""
    h = vertebra.posterior
    back_wall = vertebra.half_depth - vertebra.concavity
    cu, cv, t = vertebra.canal_half_width, vertebra.canal_half_depth, vertebra.arch
    vc = back_wall + cv
    outer = (u / (cu + t)) ** 2 + ((v - vc) / (cv + t)) ** 2 <= 1.0
    canal = (u / cu) ** 2 + ((v - vc) / cv) ** 2 <= 1.0
    behind = np.clip((v - vc) / (cv + t), 0.0, 1.0)
    w_low = -0.3 * h - 0.35 * h * behind
    mask = outer & ~canal & (v >= back_wall - 1.0) & (w <= 0.42 * h) & (w >= w_low)
    # spinous process: down and back at the region's angle
    if vertebra.spinous_length > 0:
        alpha = np.deg2rad(vertebra.spinous_angle_deg)
        vb, wb = vc + cv + 0.5 * t, -0.05 * h
        along = (v - vb) * np.float32(np.cos(alpha)) - (w - wb) * np.float32(np.sin(alpha))
        across = (v - vb) * np.float32(np.sin(alpha)) + (w - wb) * np.float32(np.cos(alpha))
        taper = 1.0 - 0.3 * np.clip(along / vertebra.spinous_length, 0.0, 1.0)
        half_u = 0.22 * vertebra.spinous_height + 1.5
        mask |= ((along >= -t) & (along <= vertebra.spinous_length)
                 & (np.abs(across) <= 0.5 * vertebra.spinous_height * taper) & (np.abs(u) <= half_u * taper))
    # transverse processes
    if vertebra.transverse_length > 0:
        beta = np.deg2rad(vertebra.transverse_back_deg)
        for side in (-1.0, 1.0):
            d = np.array([side * np.cos(beta), np.sin(beta), 0.08 if not vertebra.sacralised else -0.25])
            d /= np.linalg.norm(d)
            pu, pv, pw = u - side * (cu + 0.5 * t), v - vc, w - 0.1 * h
            along = pu * np.float32(d[0]) + pv * np.float32(d[1]) + pw * np.float32(d[2])
            dist2 = pu * pu + pv * pv + pw * pw - along * along
            radius = vertebra.transverse_radius * (1.0 - 0.25 * np.clip(along / vertebra.transverse_length, 0, 1))
            mask |= (along >= 0) & (along <= vertebra.transverse_length) & (dist2 <= radius * radius)
    # articular processes (facets), reaching towards the neighbours
    size = np.array([0.35 * t + 2.5, 0.3 * cv + 2.0, 0.22 * h + 2.0])
    for side in (-1.0, 1.0):
        for center in ((side * (cu + 0.3 * t), vc - 0.1 * cv, 0.5 * h + 1.0),
                       (side * (0.85 * cu + 0.3 * t), vc + 0.5 * cv, -0.5 * h - 1.0)):
            mask |= (((u - center[0]) / size[0]) ** 2 + ((v - center[1]) / size[1]) ** 2
                     + ((w - center[2]) / size[2]) ** 2) <= 1.0
    return mask


def vertebra_reach(vertebra: Vertebra) -> tuple[np.ndarray, np.ndarray]:
    """Local bounding box (low, high) of everything a vertebra paints."""
    lateral = max(vertebra.half_width, vertebra.canal_half_width + vertebra.arch
                  + vertebra.transverse_length + vertebra.transverse_radius) + 3.0
    back = (vertebra.half_depth + 2 * vertebra.canal_half_depth + vertebra.arch
            + vertebra.spinous_length + 4.0)
    drop = vertebra.spinous_length * np.sin(np.deg2rad(vertebra.spinous_angle_deg)) + vertebra.spinous_height
    h = max(vertebra.posterior, vertebra.h0)
    low = np.array([-lateral, -vertebra.half_depth - 8.0, -0.5 * h - max(drop, 0.3 * h) - 4.0])
    high = np.array([lateral, back, 0.5 * h + 0.3 * h + 6.0])
    return low, high


def paint_vertebra(
    canvas: np.ndarray, labels: np.ndarray, grid: Grid, vertebra: Vertebra, label_value: int, seed: int
) -> tuple[slice, slice, slice] | None:
    """Paint one vertebra; its body gets ``label_value`` (0 for none). Returns its block."""
    low, high = vertebra_reach(vertebra)
    box = _box_around(grid, vertebra.center, vertebra.frame, low, high)
    if box is None:
        return None
    u, v, w = _local(box, vertebra.center, vertebra.frame)
    body, d_side, d_top, d_bot, v_eff, w_bot, w_top = _body(vertebra, u, v, w)
    block, label_block = canvas[box.slices], labels[box.slices]
    texture = _texture(u, v, w, seed, 18.0 if vertebra.cancellous_hu < 100 else 13.0)

    posterior = _posterior_elements(vertebra, u, v, w) & ~body & (label_block == 0)  # never over a neighbour's body
    core = ndimage.binary_erosion(posterior, structure=_erosion_element(grid, vertebra.cortex_mm + 0.5))
    block[posterior] = np.int16(0.85 * vertebra.cortical_hu)
    block[core] = (vertebra.cancellous_hu + 50.0 + texture[core]).astype(np.int16)
    if vertebra.osteophytes:
        for w_edge, sign in ((vertebra.endplates(0.0, -vertebra.half_depth)[1], 1.0),
                             (vertebra.endplates(0.0, -vertebra.half_depth)[0], -1.0)):
            lip = (((u / (0.75 * vertebra.half_width)) ** 2 + ((v + vertebra.half_depth) / 4.5) ** 2
                    + ((w - w_edge - sign * 1.0) / 3.0) ** 2) <= 1.0) & ~body & (label_block == 0)
            block[lip] = np.int16(vertebra.cortical_hu)

    d_end = np.minimum(d_top, d_bot)
    values = np.float32(vertebra.cancellous_hu) + texture
    if vertebra.compaction_hu:
        band = d_top if vertebra.sup_share >= 0.5 else d_bot
        values = values + np.where(band < 5.0, np.float32(vertebra.compaction_hu), np.float32(0.0))
    if vertebra.endplate_sclerosis:
        values = values + np.where(d_end < 3.0, np.float32(220.0), np.float32(0.0))
    # a shell thinner than the voxels would be sampled as a dashed line: widen it to about a
    # voxel and lower its HU so the integrated density stays (what partial volume does)
    contrast = vertebra.cortical_hu - vertebra.cancellous_hu
    for depth, voxel in ((d_side, float(np.max(np.abs(grid.steps[1:])))), (d_end, float(np.max(np.abs(grid.steps))))):
        shell = max(vertebra.cortex_mm, 0.9 * voxel)
        values = np.where(depth < shell, np.float32(vertebra.cancellous_hu + contrast * vertebra.cortex_mm / shell),
                          values)
    mid = 0.5 * (w_bot + w_top)
    vein = ((np.abs(u) < 2.5) & (v_eff > vertebra.half_depth - vertebra.concavity - 6.0)
            & (np.abs(w - mid) < 1.8))
    values = np.where(vein, np.float32(45.0), values)
    body_label = body.copy()
    for lesion in vertebra.lesions:
        cu_, cv_, cw_ = lesion.center
        if lesion.kind in ("sclerotic", "lytic"):
            r = lesion.radius  # an irregular outline: the radius wobbles with the texture
            ragged = (r * (1.0 + 0.02 * texture)) ** 2
            blob = (u - cu_) ** 2 + (v - cv_) ** 2 + (w - cw_) ** 2 <= ragged
            blob |= ((u - cu_ - 0.5 * r) ** 2 + (v - cv_ + 0.3 * r) ** 2 + (w - cw_ - 0.2 * r) ** 2
                     <= 0.36 * ragged)
            spread = 2.0 if lesion.kind == "sclerotic" else 0.5
            values = np.where(blob & body, np.float32(lesion.value_hu) + spread * texture, values)
        elif lesion.kind == "schmorl":
            superior = lesion.extra["endplate"] == "superior"
            w_b, w_t = vertebra.endplates(np.float64(cu_), np.float64(cv_))
            w0 = float(w_t if superior else w_b)
            squash = lesion.radius / lesion.extra["depth"]
            dist2 = (u - cu_) ** 2 + (v - cv_) ** 2 + ((w - w0) * np.float32(squash)) ** 2
            notch = body & (dist2 <= lesion.radius ** 2)
            rim = body & ~notch & (dist2 <= (lesion.radius + 1.3) ** 2)
            values = np.where(rim, np.float32(vertebra.cortical_hu), values)
            values = np.where(notch, np.float32(lesion.value_hu), values)
            body_label &= ~notch
    block[body] = values[body].astype(np.int16)
    if label_value:
        label_block[body_label] = np.uint8(label_value)
    return box.slices


def paint_canal(canvas: np.ndarray, grid: Grid, vertebrae: list[Vertebra]) -> None:
    """The spinal canal (CSF and cord) as one tube through the vertebral foramina."""
    points, radii = [], []
    for vertebra in vertebrae:
        if vertebra.region == "S" and vertebra.level not in ("S1", "S2", "S3"):
            continue
        offset = vertebra.half_depth - vertebra.concavity + vertebra.canal_half_depth
        points.append(vertebra.to_world(np.array([0.0, offset, 0.0])))
        radii.append(0.92 * min(vertebra.canal_half_width, vertebra.canal_half_depth))
    path = smooth_path(np.array(points), 8 * len(points))
    radius = np.interp(np.linspace(0, 1, len(path)), np.linspace(0, 1, len(radii)), radii)
    paint_tube(canvas, grid, path, radius, CSF_HU)
