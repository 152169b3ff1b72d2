"""Abdomen and pelvis: solid organs, bowel with gas and contents, bladder, great vessels.

Organs are placed relative to the inner abdominal wall and the spine at their height
(:func:`engine.phantom.thorax.cavity_at`) and painted only over the fat that fills the
cavity, so they never cover the muscles painted before them. Portal-venous contrast:
enhanced liver, spleen, kidneys and vessels.
"""

from __future__ import annotations

import numpy as np

from engine.phantom.body import BodyPlan
from engine.phantom.grid import Grid, stamp_spheres
from engine.phantom.shapes import (
    paint_ellipsoid,
    paint_indices,
    paint_tube,
    paint_tubes,
    paint_vertical_tube,
    smooth_path,
)
from engine.phantom.thorax import cavity_point

_over_fat = lambda values: (values < -50) & (values > -300)
_over_soft = lambda values: values < 120


def paint_solid_organs(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator) -> None:
    lm = body.landmarks
    k = float(np.clip((lm["z_T1"] - lm["z_S1"]) / 420.0, 0.8, 1.2))
    liver_hu = rng.uniform(95.0, 125.0)
    # liver: right upper quadrant, its dome under the right hemidiaphragm
    semi_z = 95.0 * k
    zc = lm["z_dome_right"] + 4.0 - semi_z
    c = cavity_point(body, zc)
    hw, depth = c["half_width"], c["y_back"] - c["y_front"]
    cy = 0.5 * (c["y_front"] + c["y_back"])
    paint_ellipsoid(canvas, grid, np.array([c["cx"] - 0.38 * hw, cy + 0.02 * depth, zc]),
                    np.array([0.62 * hw, 0.42 * depth, semi_z]), liver_hu, within=_over_fat)
    left_lobe_z = lm["z_dome_right"] - 40.0 * k  # reaches the central tendon, under the heart
    paint_ellipsoid(canvas, grid, np.array([c["cx"] + 0.1 * hw, c["y_front"] + 0.3 * depth, left_lobe_z]),
                    np.array([0.45 * hw, 0.24 * depth, 45.0 * k]), liver_hu, within=_over_fat)
    paint_ellipsoid(canvas, grid, np.array([c["cx"] - 0.4 * hw, c["y_front"] + 0.18 * depth, zc - 45.0 * k]),
                    np.array([15.0, 15.0, 32.0]) * k, rng.uniform(0.0, 20.0))  # gallbladder
    # spleen and stomach under the left dome
    zs = lm["z_dome_left"] - 60.0 * k
    c = cavity_point(body, zs)
    hw, depth = c["half_width"], c["y_back"] - c["y_front"]
    paint_ellipsoid(canvas, grid, np.array([c["cx"] + 0.68 * hw, c["y_back"] - 0.28 * depth, zs]),
                    np.array([27.0, 48.0, 55.0]) * k, liver_hu + rng.uniform(-5.0, 15.0), angle_deg=-35.0,
                    within=_over_fat)
    stomach = np.array([c["cx"] + 0.38 * hw, c["y_front"] + 0.35 * depth, zs + 10.0])
    st_semi = np.array([48.0, 38.0, 55.0]) * k * rng.uniform(0.8, 1.15)
    paint_ellipsoid(canvas, grid, stomach, st_semi, 55.0, within=_over_fat)
    paint_ellipsoid(canvas, grid, stomach, st_semi - 4.0, rng.uniform(5.0, 30.0))
    paint_ellipsoid(canvas, grid, stomach - [0.0, 0.45 * st_semi[1], -0.1 * st_semi[2]],
                    st_semi * [0.7, 0.45, 0.55], -1000.0, within=lambda v: (v > -100) & (v < 60))
    # pancreas across the spine at L1, kidneys beside it
    c = cavity_point(body, lm["z_L1"])
    paint_ellipsoid(canvas, grid, np.array([c["spine_x"] + 18.0, c["spine_y"] - c["spine_hd"] - 38.0, lm["z_L1"] + 10.0]),
                    np.array([62.0, 11.0, 14.0]) * k, rng.uniform(85.0, 110.0), angle_deg=-15.0, within=_over_fat)
    for side, dz in ((-1.0, -rng.uniform(5.0, 20.0)), (1.0, rng.uniform(0.0, 12.0))):
        center = np.array([c["spine_x"] + side * (c["spine_hw"] + 46.0 * k), c["spine_y"] + 6.0, lm["z_L1"] + dz])
        semi = np.array([26.0, 23.0, 52.0]) * k * rng.uniform(0.9, 1.1)
        angle = side * 22.0
        paint_ellipsoid(canvas, grid, center, semi + 13.0, body.hu["fat"] + 8.0, angle, within=_over_fat)
        paint_ellipsoid(canvas, grid, center, semi, rng.uniform(160.0, 200.0), angle)
        paint_ellipsoid(canvas, grid, center, semi * 0.72, rng.uniform(110.0, 140.0), angle)
        sinus = center + np.array([-side * 0.5 * semi[0], -4.0, 0.0])
        paint_ellipsoid(canvas, grid, sinus, semi * [0.45, 0.4, 0.5], -70.0, angle)
        paint_ellipsoid(canvas, grid, sinus, semi * [0.25, 0.2, 0.3], 12.0, angle)
    # pelvis: bladder, uterus or prostate
    sym = body.points["symphysis"]
    bladder = np.array([0.0, sym[1] + 38.0, lm["z_sym"] + 38.0 * k])
    b_semi = np.array([42.0, 34.0, 34.0]) * rng.uniform(0.6, 1.2)
    paint_ellipsoid(canvas, grid, bladder, b_semi + 3.0, 45.0, within=_over_fat)
    paint_ellipsoid(canvas, grid, bladder, b_semi, rng.uniform(2.0, 18.0))
    if body.female:
        paint_ellipsoid(canvas, grid, bladder + [0.0, b_semi[1] + 20.0, 25.0], np.array([30.0, 22.0, 40.0]),
                        rng.uniform(70.0, 110.0), within=_over_fat)
    else:
        paint_ellipsoid(canvas, grid, np.array([0.0, sym[1] + 32.0, lm["z_sym"] + 4.0]), np.array([20.0, 17.0, 18.0]),
                        rng.uniform(35.0, 55.0), within=_over_fat)


def paint_bowel(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator) -> None:
    """Colon from caecum to rectum with gas and stool; small-bowel loops in the mid-abdomen."""
    lm = body.landmarks
    oral_contrast = rng.random() < 0.35

    def at(z: float, fx: float, fy: float) -> np.ndarray:
        c = cavity_point(body, z)
        return np.array([c["cx"] + fx * c["half_width"],
                         c["y_front"] + fy * (c["y_back"] - c["y_front"]), z])

    s1 = body.points["s1_top"]
    anchors = [at(lm["z_crest"] - 25.0, -0.6, 0.45), at(0.5 * (lm["z_crest"] + lm["z_L1"]), -0.66, 0.5),
               at(lm["z_L1"] - 15.0, -0.62, 0.35), at(lm["z_L3"] + 15.0, -0.3, 0.12), at(lm["z_L3"] + 25.0, 0.25, 0.12),
               at(lm["z_L1"] + 15.0, 0.66, 0.4), at(0.5 * (lm["z_crest"] + lm["z_L1"]), 0.7, 0.55),
               at(lm["z_crest"] - 15.0, 0.66, 0.55), at(lm["z_S1"] - 25.0, 0.3, 0.35), at(lm["z_S1"] - 45.0, -0.05, 0.5),
               np.array([s1[0], s1[1] + 35.0, lm["z_S1"] - 75.0]), np.array([s1[0], s1[1] + 20.0, lm["z_sym"] + 5.0])]
    path = smooth_path(np.array(anchors), 160)
    radius = np.interp(np.linspace(0, 1, len(path)), [0, 0.1, 0.7, 0.85, 1.0], [27.0, 22.0, 20.0, 16.0, 14.0])
    paint_tubes(canvas, grid, [(path, radius, rng.uniform(-10.0, 35.0))], within=_over_fat, wall=(2.5, 45.0),
                step_factor=0.9)
    contents = lambda values: (values > -60) & (values < 60)
    pockets = [i for i in range(0, len(path), 4) if rng.random() < 0.65]
    gas = path[pockets] - np.stack([np.zeros(len(pockets)), 0.45 * radius[pockets], np.zeros(len(pockets))], axis=1)
    bubbles = path[rng.integers(0, len(path), 160)] + rng.normal(0, 7, (160, 3))
    paint_indices(canvas, stamp_spheres(grid, np.concatenate([gas, bubbles]),
                                        np.concatenate([0.55 * radius[pockets], rng.uniform(1.5, 3.5, 160)])),
                  -1000.0, within=contents)
    loops, gas_pockets = [], []
    for _ in range(int(rng.integers(25, 40))):
        z = rng.uniform(lm["z_fh"] + 25.0, lm["z_L1"] - 10.0)
        start = at(z, rng.uniform(-0.45, 0.45), rng.uniform(0.08, 0.55))
        loop = np.cumsum(np.concatenate([start[None], rng.normal(0, 22.0, (4, 3))]), axis=0)
        r = rng.uniform(9.0, 14.0)
        content = rng.uniform(200.0, 320.0) if oral_contrast and rng.random() < 0.5 else rng.uniform(5.0, 30.0)
        loops.append((smooth_path(loop, 24), r, content))
        if rng.random() < 0.3:
            gas_pockets.append((loop[1:3] - [0, 0.5 * r, 0], 0.45 * r, -1000.0))
    paint_tubes(canvas, grid, loops, within=_over_fat, wall=(2.5, rng.uniform(60.0, 90.0)), step_factor=0.9)
    paint_tubes(canvas, grid, gas_pockets, within=lambda v: (v > -60) & (v < 330), step_factor=0.9)


def paint_abdominal_vessels(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator,
                            aorta_hu: float, aorta_nodes: list) -> None:
    """Abdominal aorta to its bifurcation, iliac and femoral arteries; IVC and iliac veins."""
    lm = body.landmarks
    fh = body.points["femoral_head"]
    z_bif = lm["z_L3"] - 0.6 * (lm["z_L3"] - lm["z_S1"]) * 0.7
    nodes = [aorta_nodes[-1]] if aorta_nodes else []
    for z in np.linspace(lm["z_Tlast"] - 5.0, z_bif, 6):
        c = cavity_point(body, z)
        swing = np.clip((lm["z_Tlast"] - z) / 60.0, 0.0, 1.0)
        y = c["spine_y"] - (0.35 + 0.65 * swing) * c["spine_hd"] - swing * 12.0
        nodes.append((c["spine_x"] + c["spine_hw"] * (1 - 0.6 * swing) + 4.0 - 8.0 * swing, y, z, 12.0 - 2.5 * swing))
    paint_vertical_tube(canvas, grid, np.array(nodes), aorta_hu)
    vein_hu = aorta_hu - rng.uniform(40.0, 80.0)
    ivc = []
    for z in np.linspace(lm["z_dome_right"] - 10.0, z_bif - 10.0, 6):
        c = cavity_point(body, z)
        ivc.append((c["spine_x"] - 0.6 * c["spine_hw"] - 8.0, c["spine_y"] - c["spine_hd"] - 13.0, z, 11.0))
    paint_vertical_tube(canvas, grid, np.array(ivc), vein_hu, within=_over_soft)
    bif = np.array(nodes[-1][:3])
    z_bottom = float(min(grid.zs.min(), lm["z_sym"]) - 20.0)
    for side in (-1.0, 1.0):
        for start, radius, hu, shift in ((bif, 6.0, aorta_hu, 0.0), (np.array(ivc[-1][:3]), 7.5, vein_hu, 9.0)):
            path = np.array([start, [side * 45.0, start[1] + 15.0, lm["z_S1"] - 10.0],
                             [side * (abs(fh[0]) - 18.0 + shift), fh[1] - 42.0, lm["z_fh"] + 15.0],
                             [side * (abs(fh[0]) - 12.0 + shift), fh[1] - 48.0, lm["z_sym"] - 10.0],
                             [side * (abs(fh[0]) - 10.0 + shift), fh[1] - 45.0, z_bottom]])
            paint_tube(canvas, grid, smooth_path(path, 40), np.linspace(radius, radius * 0.75, 40), hu,
                       within=_over_soft)
