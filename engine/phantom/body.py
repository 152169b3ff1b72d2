"""The trunk around the spine: landmarks, outline, fat and muscle layers, back muscles.

Every soft-tissue landmark is placed relative to the spine that was drawn first, so the
anatomy follows the column (a scoliotic or kyphotic patient's trunk follows the curve, the
back lies on the table). The outline of each axial slice is a squircle-like closed curve
(between an ellipse and a superellipse, flatter at the back) whose size follows a profile
along z: neck, shoulders, thorax, waist, hips, then two thighs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.phantom.grid import Grid
from engine.phantom.plan import SpinePlan

CHUNK = 16


@dataclass
class BodyPlan:
    """Landmarks (LPS mm) and the z-profiles of the trunk."""

    landmarks: dict[str, float]
    points: dict[str, np.ndarray]
    profile_z: np.ndarray  # ascending anchor heights
    profile: dict[str, np.ndarray]  # name -> values at profile_z
    hu: dict[str, float]  # tissue values of this patient
    female: bool = False
    spine_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spine_dims: dict[str, np.ndarray] = field(default_factory=dict)

    def at(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Every profile interpolated at heights z (clamped outside the anchors)."""
        return {k: np.interp(z, self.profile_z, v) for k, v in self.profile.items()}

    def spine_at(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Per-vertebra sizes (half width, half depth, canal...) interpolated along z."""
        return {k: np.interp(z, self.spine_z, v) for k, v in self.spine_dims.items()}

    def table_y(self) -> float:
        """The table top: touching the most posterior skin of the trunk (neck to thighs)."""
        lm = self.landmarks
        on_table = (self.profile_z >= lm["z_perineum"] - 60.0) & (self.profile_z <= lm["z_T1"])
        return float(self.profile["y_back"][on_table].max() + 1.0)


def sample_body(rng: np.random.Generator, spine: SpinePlan) -> BodyPlan:
    """Landmarks and profiles of the trunk of the patient whose spine is given."""
    patient = spine.patient
    k, fat = patient.scale, patient.fat_mm
    ws = patient.width * k
    by_level = {v.level: v for v in spine.vertebrae}
    thoracic = [v for v in spine.vertebrae if v.region == "T"]
    z_of = {v.level: float(v.center[2]) for v in spine.vertebrae}
    s1 = by_level["S1"]
    s1_top = s1.to_world(np.array([0.0, 0.0, 0.5 * s1.posterior]))
    hip_drop = rng.uniform(95.0, 115.0) * k
    fh = np.array([rng.uniform(82.0, 95.0) * k * (1.05 if patient.sex == "F" else 1.0),
                   s1_top[1] - rng.uniform(15.0, 40.0), s1_top[2] - hip_drop])
    z_sym = fh[2] - rng.uniform(15.0, 30.0) * k
    landmarks = {
        "z_top": z_of["C4"] + 40.0,
        "z_C7": z_of["C7"], "z_T1": z_of["T1"], "z_T4": z_of["T4"],
        "z_T8": z_of["T8"], "z_Tlast": z_of[thoracic[-1].level],
        "z_L1": z_of["L1"], "z_L3": z_of["L3"], "z_S1": z_of["S1"],
        "z_S1_top": float(s1_top[2]),
        "z_crest": float(s1_top[2] + rng.uniform(15.0, 35.0) * k),
        "z_fh": float(fh[2]), "z_sym": float(z_sym), "z_perineum": float(z_sym - 12.0),
        "z_dome_right": z_of["T9"] + rng.uniform(-10.0, 15.0),
        "z_carina": z_of["T5"] + rng.uniform(-8.0, 8.0),
    }
    landmarks["z_dome_left"] = landmarks["z_dome_right"] - rng.uniform(8.0, 22.0)
    points = {
        "femoral_head": fh,
        "symphysis": np.array([0.0, fh[1] - rng.uniform(50.0, 68.0) * k, z_sym]),
        "s1_top": s1_top,
    }
    # back skin: behind the posterior elements of each vertebra, then the buttocks
    y_back_z, y_back = [], []
    for vertebra in spine.vertebrae:
        if vertebra.region == "S" and vertebra.level != "S1":
            continue
        tip_local = np.array([0.0, vertebra.half_depth + 2 * vertebra.canal_half_depth + vertebra.arch
                              + vertebra.spinous_length * np.cos(np.deg2rad(vertebra.spinous_angle_deg)), 0.0])
        tip = vertebra.to_world(tip_local)
        margin = {"C": 22.0, "T": 14.0, "L": 24.0, "S": 30.0}[vertebra.region]
        y_back_z.append(float(vertebra.center[2]))
        y_back.append(float(tip[1] + margin + 0.35 * fat + 3.0))
    y_back_z += [landmarks["z_fh"], landmarks["z_perineum"] - 400.0]
    y_back += [fh[1] + 105.0 * k + 0.6 * fat, fh[1] + 85.0 * k + 0.4 * fat]
    order = np.argsort(y_back_z)
    lm = landmarks
    anchors = [  # z, half width, half depth, squareness, fat (lat, ant, back), muscle (lat, ant, back), fill HU
        (lm["z_top"], 68 * ws, 56 * k, 0.1, 4, 4, 6, 14, 12, 22, 35.0),
        (lm["z_C7"], 112 * ws, 74 * k, 0.15, 6, 5, 8, 22, 14, 24, 35.0),
        (lm["z_T1"], 135 * ws, 88 * k, 0.15, 0.35 * fat + 3, 0.3 * fat + 3, 0.25 * fat + 4, 24, 22, 14, -60.0),
        (lm["z_T4"], 150 * ws, 102 * k, 0.12, 0.4 * fat + 3, 0.35 * fat + 3, 0.3 * fat + 4, 11, 18, 10, -60.0),
        (lm["z_T8"], 157 * ws, 110 * k, 0.1, 0.45 * fat + 3, 0.4 * fat + 3, 0.3 * fat + 4, 9, 10, 9, -60.0),
        (lm["z_Tlast"], 160 * ws, 112 * k + 0.4 * fat, 0.12, 0.7 * fat + 3, 0.8 * fat + 3, 0.4 * fat + 4, 9, 10, 9, -95.0),
        (lm["z_L3"], 148 * ws + 0.7 * fat, 100 * k + 0.9 * fat, 0.15, 0.9 * fat + 3, fat + 3, 0.5 * fat + 4, 10, 12, 10, -95.0),
        (lm["z_crest"], 158 * ws + 0.6 * fat, 104 * k + 0.7 * fat, 0.22, 0.8 * fat + 4, 0.9 * fat + 3, 0.6 * fat + 6, 22, 11, 20, -92.0),
        (lm["z_fh"], 170 * ws + 0.5 * fat, 106 * k + 0.5 * fat, 0.3, 0.8 * fat + 5, 0.9 * fat + 3, 0.7 * fat + 8, 34, 10, 40, -90.0),
        (lm["z_sym"], 168 * ws + 0.5 * fat, 100 * k + 0.5 * fat, 0.3, 0.8 * fat + 5, 0.8 * fat + 3, 0.7 * fat + 8, 34, 12, 40, -90.0),
        (lm["z_perineum"] - 400.0, 160 * ws + 0.5 * fat, 95 * k + 0.5 * fat, 0.3, 0.6 * fat + 4, 0.6 * fat + 3, 0.6 * fat + 6, 30, 12, 30, -90.0),
    ]
    table = np.array(sorted(anchors, key=lambda row: row[0]), dtype=float)
    profile_z = table[:, 0]
    names = ("a", "b", "square", "fat_lat", "fat_ant", "fat_back", "mus_lat", "mus_ant", "mus_back", "fill")
    profile = {name: table[:, i + 1] for i, name in enumerate(names)}
    profile["y_back"] = np.interp(profile_z, np.array(y_back_z)[order], np.array(y_back)[order])
    # denser sampling of y_back so the outline follows each vertebra's curve
    dense_z = np.unique(np.concatenate([profile_z, np.array(y_back_z)]))
    profile = {name: np.interp(dense_z, profile_z, values) for name, values in profile.items()}
    profile["y_back"] = np.interp(dense_z, np.array(y_back_z)[order], np.array(y_back)[order])
    _settle_on_table(profile, dense_z, landmarks)
    hu = {
        "fat": rng.uniform(-112.0, -92.0), "muscle": rng.uniform(42.0, 58.0), "skin": rng.uniform(10.0, 30.0),
    }
    spine_z, dims = _spine_dims(spine)
    return BodyPlan(landmarks=landmarks, points=points, profile_z=dense_z, profile=profile, hu=hu,
                    female=patient.sex == "F", spine_z=spine_z, spine_dims=dims)


def _settle_on_table(profile: dict[str, np.ndarray], z: np.ndarray, landmarks: dict[str, float]) -> None:
    """Let the back sag onto the table: soft tissue fills most of the gap between the
    anatomical back (behind the spinous processes) and the table, except in the neck."""
    trunk = (z >= landmarks["z_fh"]) & (z <= landmarks["z_T4"])
    table = profile["y_back"][trunk].max()
    weight = np.clip((landmarks["z_T1"] + 20.0 - z) / 40.0, 0.0, 1.0) * 0.8
    extra = np.clip(table - profile["y_back"], 0.0, None) * weight
    profile["y_back"] = profile["y_back"] + extra
    profile["b"] = profile["b"] + 0.5 * extra  # the front stays where it was
    profile["fat_back"] = profile["fat_back"] + 0.5 * extra
    profile["mus_back"] = profile["mus_back"] + 0.5 * extra


def _spine_dims(spine: SpinePlan) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sizes of the vertebrae and the axis position, indexed by the z of their centres."""
    rows = sorted(spine.vertebrae, key=lambda v: v.center[2])
    z = np.array([v.center[2] for v in rows])
    dims = {
        "half_width": np.array([v.half_width for v in rows]),
        "half_depth": np.array([v.half_depth for v in rows]),
        "lamina": np.array([v.half_depth - v.concavity + 2 * v.canal_half_depth + v.arch for v in rows]),
        "canal_half_width": np.array([v.canal_half_width + v.arch for v in rows]),
        "x": np.array([v.center[0] for v in rows]),
        "y": np.array([v.center[1] for v in rows]),
        "tilt_y": np.array([v.frame[1, 2] / max(v.frame[2, 2], 0.3) for v in rows]),
    }
    return z, dims


def _outline(dx, dy, a, b_front, b_back, square):
    """Squircle-like level function (< 1 inside), flatter (squarer) at the back.

    The level is a sum of an x-only and a y-only term, so the terms are computed on the
    small broadcast arrays and only the final sum has the full block shape.
    """
    xn2 = (dx / a) ** 2
    yn = np.where(dy < 0, dy / b_front, dy / b_back)
    yn2 = yn * yn
    lam_y = np.where(dy < 0, square, np.minimum(square + 0.3, 0.9))
    return ((1.0 - square) * xn2 + square * xn2 * xn2) + ((1.0 - lam_y) * yn2 + lam_y * yn2 * yn2)


def paint_trunk(canvas: np.ndarray, grid: Grid, body: BodyPlan) -> None:
    """Air, skin, subcutaneous fat, muscle wall and the body cavities, then the thighs."""
    hu = body.hu
    lm = body.landmarks
    fh = body.points["femoral_head"]
    for start in range(0, grid.shape[0], CHUNK):
        box = grid.slab(start, min(start + CHUNK, grid.shape[0]))
        z = box.z[:, 0, 0].astype(float)
        p = {k: v.astype(np.float32)[:, None, None] for k, v in body.at(z).items()}
        spine = body.spine_at(z)
        cx = (0.4 * spine["x"]).astype(np.float32)[:, None, None]
        # the trunk narrows to nothing below the perineum; the thighs take over
        fade = np.clip((z - (lm["z_perineum"] - 45.0)) / 45.0, 0.0, 1.0).astype(np.float32)[:, None, None]
        a, b = p["a"] * (0.25 + 0.75 * fade), p["b"] * (0.6 + 0.4 * fade)
        cy = p["y_back"] - b
        dx, dy = box.x - cx, box.y - cy  # (nz, 1, nx) and (nz, ny, 1)
        skin = _outline(dx, dy, a, b, b, p["square"])
        inside = skin <= 1.0
        skin_band = inside & (skin > (1.0 - 3.0 / b) ** 2)
        wall = _outline(dx, dy, a - p["fat_lat"], b - p["fat_ant"], b - p["fat_back"], p["square"]) <= 1.0
        core = _outline(dx, dy, a - p["fat_lat"] - p["mus_lat"], b - p["fat_ant"] - p["mus_ant"],
                        b - p["fat_back"] - p["mus_back"], p["square"]) <= 1.0
        if np.any(fade <= 0):
            gone = fade <= 0
            inside &= ~gone
            skin_band &= ~gone
            wall &= ~gone
            core &= ~gone
        if np.any(z < lm["z_sym"] + 25.0):
            ta = (0.50 * p["a"]).astype(np.float32)
            tb = (0.92 * p["b"]).astype(np.float32)
            ty = p["y_back"] - tb
            tfat = 0.6 * p["fat_lat"] + 2.0
            grow = np.clip((lm["z_sym"] + 25.0 - z) / 40.0, 0.0, 1.0).astype(np.float32)[:, None, None]
            for side in (-1.0, 1.0):
                tx = np.float32(side * 0.95 * abs(fh[0])) + cx
                inside |= ((box.x - tx) / ta) ** 2 + ((box.y - ty) / tb) ** 2 <= grow
                wall |= ((box.x - tx) / (ta - tfat)) ** 2 + ((box.y - ty) / (tb - tfat)) ** 2 <= grow
        block = canvas[box.slices]
        block[...] = -1000
        block[inside] = np.int16(hu["fat"])
        block[skin_band] = np.int16(hu["skin"])
        block[wall] = np.int16(hu["muscle"])
        fill = np.broadcast_to(p["fill"], block.shape)
        block[core] = fill[core].astype(np.int16)


def paint_back_muscles(canvas: np.ndarray, grid: Grid, body: BodyPlan) -> None:
    """Erector spinae beside the spinous processes; psoas and quadratus lumborum in the loins."""
    lm = body.landmarks
    fh = body.points["femoral_head"]
    muscle = np.int16(body.hu["muscle"])
    top = min(lm["z_top"], float(grid.zs.max()))
    for start in range(0, grid.shape[0], CHUNK):
        box = grid.slab(start, min(start + CHUNK, grid.shape[0]))
        z = box.z[:, 0, 0].astype(float)
        if z.min() > top:
            continue
        s = {k: v.astype(np.float32)[:, None, None] for k, v in body.spine_at(z).items()}
        block = canvas[box.slices]
        zz = z[:, None, None]
        lumbar = np.clip((lm["z_Tlast"] + 30.0 - zz) / 60.0, 0.0, 1.0).astype(np.float32)
        sacral_fade = np.clip((zz - (lm["z_S1"] - 60.0)) / 50.0, 0.0, 1.0).astype(np.float32)
        ra = (17.0 + 13.0 * lumbar) * sacral_fade
        rb = (14.0 + 12.0 * lumbar) * sacral_fade
        cy = s["y"] + s["lamina"] + 0.7 * rb
        mask = np.zeros(block.shape, dtype=bool)
        for side in (-1.0, 1.0):
            cx = s["x"] + side * (s["canal_half_width"] + 0.7 * ra)
            mask |= ((box.x - cx) / np.maximum(ra, 1e-3)) ** 2 + ((box.y - cy) / np.maximum(rb, 1e-3)) ** 2 <= 1.0
        # psoas: from the last thoracic level into the pelvis, towards the hips
        psoas_on = (zz < lm["z_Tlast"]) & (zz > lm["z_fh"] - 10.0)
        if np.any(psoas_on):
            grow = np.clip((lm["z_Tlast"] - zz) / (lm["z_Tlast"] - lm["z_L3"] + 30.0), 0.0, 1.0)
            r = (5.0 + 15.0 * grow).astype(np.float32)
            pelvic = np.clip((lm["z_S1"] - zz) / (lm["z_S1"] - lm["z_fh"]), 0.0, 1.0).astype(np.float32)
            for side in (-1.0, 1.0):
                spine_x = s["x"] + side * (s["half_width"] + 0.8 * r)
                cx = (1 - pelvic) * spine_x + pelvic * np.float32(side * (abs(fh[0]) - 22.0))
                cy = (1 - pelvic) * (s["y"] + 0.15 * s["half_depth"]) + pelvic * np.float32(fh[1] - 28.0)
                mask |= psoas_on & (((box.x - cx) ** 2 + (box.y - cy) ** 2) <= r * r)
                ql_on = (zz < lm["z_Tlast"]) & (zz > lm["z_L3"] - 30.0)
                qx = s["x"] + side * (s["half_width"] + 2 * r + 14.0)
                mask |= ql_on & (((box.x - qx) / 15.0) ** 2 + ((box.y - s["y"] - 22.0) / 9.0) ** 2 <= 1.0)
        block[mask & (block > -900)] = muscle
