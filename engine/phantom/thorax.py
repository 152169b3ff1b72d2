"""Chest and neck: lungs above domed diaphragms, heart, great vessels, airway, breasts.

Painted after the abdominal organs (the lungs above each dome replace the top of the liver
and spleen) and before the ribs and the spine. The lungs fill the rib cage around the
mediastinum and the spine, denser where they are dependent (posterior, supine), with
vessel trees branching from the hila.
"""

from __future__ import annotations

import numpy as np

from engine.phantom.body import CHUNK, BodyPlan
from engine.phantom.grid import Grid
from engine.phantom.shapes import (
    paint_ellipsoid,
    paint_tube,
    paint_tubes,
    paint_vertical_tube,
    smooth_path,
)

LUNG_HU = -860.0


def cavity_at(body: BodyPlan, z: np.ndarray) -> dict[str, np.ndarray]:
    """Inner chest/abdominal wall at heights z: centre x, front and back y, half width."""
    p, s = body.at(z), body.spine_at(z)
    b = p["b"]
    y_front = p["y_back"] - 2 * b
    return {
        "cx": 0.4 * s["x"],
        "half_width": p["a"] - p["fat_lat"] - p["mus_lat"],
        "y_front": y_front + p["fat_ant"] + p["mus_ant"],
        "y_back": p["y_back"] - p["fat_back"] - p["mus_back"],
        "spine_x": s["x"], "spine_y": s["y"], "spine_hw": s["half_width"], "spine_hd": s["half_depth"],
        "lamina": s["lamina"], "canal_hw": s["canal_half_width"],
    }


def cavity_point(body: BodyPlan, z: float) -> dict[str, float]:
    """:func:`cavity_at` at one height, as plain floats."""
    return {k: float(v[0]) for k, v in cavity_at(body, np.array([z])).items()}


def paint_lungs(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator) -> None:
    """Lungs inside the rib cage, above the domes, around mediastinum and spine; diaphragm."""
    lm = body.landmarks
    z_apex = lm["z_T1"] + 32.0
    z_low = min(lm["z_dome_right"], lm["z_dome_left"]) - 75.0
    for start in range(0, grid.shape[0], CHUNK):
        box = grid.slab(start, min(start + CHUNK, grid.shape[0]))
        z = box.z[:, 0, 0].astype(float)
        if z.max() < z_low or z.min() > z_apex:
            continue
        c = {k: v.astype(np.float32)[:, None, None] for k, v in cavity_at(body, z).items()}
        apex = np.where(z > lm["z_T1"] + 5.0, np.sqrt(np.clip((z_apex - z) / 27.0, 0.0, 1.0)), 1.0)
        apex = apex.astype(np.float32)[:, None, None]
        y_back = c["spine_y"] + 0.55 * c["lamina"] + 6.0
        y_front = c["y_front"] + 5.0
        cy = 0.5 * (y_front + y_back)
        hb = 0.5 * (y_back - y_front) * (0.6 + 0.4 * apex)
        ha = (c["half_width"] - 6.0) * apex
        dx, dy = box.x - c["cx"], box.y - cy
        xn2, yn2 = (dx / np.maximum(ha, 1.0)) ** 2, (dy / np.maximum(hb, 1.0)) ** 2
        inside = (0.75 * xn2 + 0.25 * xn2 * xn2) + (0.75 * yn2 + 0.25 * yn2 * yn2) <= 1.0
        lung = inside.copy()
        # mediastinum strip, the spine and the paravertebral gutters are not lung
        med_cy = 0.5 * (y_front + c["spine_y"])
        med_hb = 0.5 * (c["spine_y"] - y_front) + 4.0
        lung &= ((box.x - c["cx"] - 6.0) / 20.0) ** 2 + ((box.y - med_cy) / med_hb) ** 4 > 1.0
        lung &= (((box.x - c["spine_x"]) / (c["spine_hw"] + 6.0)) ** 2
                 + ((box.y - c["spine_y"]) / (c["spine_hd"] + 6.0)) ** 2) > 1.0
        post_cy = c["spine_y"] + 0.6 * c["lamina"]
        lung &= (((box.x - c["spine_x"]) / (c["canal_hw"] + 14.0)) ** 2
                 + ((box.y - post_cy) / (0.75 * c["lamina"] + 6.0)) ** 2) > 1.0
        # domes: the lung base rises towards the centre of each hemithorax
        side_right = box.x < c["cx"]
        dome = np.where(side_right, np.float32(lm["z_dome_right"]), np.float32(lm["z_dome_left"]))
        # each dome peaks 0.4 half-widths from the midline; between the two peaks the
        # diaphragm stays high (the heart rests on its central tendon)
        off_peak = np.maximum(np.abs(box.x - c["cx"]) - 0.4 * ha, 0.0)
        lateral = np.clip(np.abs(box.x - c["cx"]) / np.maximum(0.5 * ha, 1.0), 0.0, 1.0)  # recesses are posterolateral
        rn2 = (off_peak / np.maximum(ha, 1.0)) ** 2 + ((box.y - cy + 0.1 * hb) / np.maximum(hb, 1.0)) ** 2 * lateral
        surface = dome - 48.0 * rn2
        diaphragm = inside & (box.z <= surface) & (box.z > surface - 5.0)
        lung &= box.z > surface
        gradient = 70.0 * np.clip((box.y - y_front) / np.maximum(y_back - y_front, 1.0), 0.0, 1.0)
        block = canvas[box.slices]
        values = np.broadcast_to(np.float32(LUNG_HU) + gradient, block.shape)
        block[lung] = values[lung].astype(np.int16)
        block[diaphragm & (block < -30) & (block > -300)] = np.int16(body.hu["muscle"])
    _lung_vessels(canvas, grid, body, rng)


def _lung_vessels(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator) -> None:
    """Branching vessels from each hilum, painted only where the canvas is lung."""
    lm = body.landmarks
    z_hilum = lm["z_carina"] - 20.0
    c = cavity_point(body, z_hilum)
    in_lung = lambda values: (values < -600) & (values > -950)
    tubes = []
    for side in (-1.0, 1.0):
        hilum = np.array([c["cx"] + side * 42.0, c["spine_y"] - c["spine_hd"] - 30.0, z_hilum])
        for _ in range(22):
            direction = np.array([side * rng.uniform(0.2, 1.0), rng.uniform(-0.6, 0.8), rng.uniform(-1.0, 0.9)])
            direction /= np.linalg.norm(direction)
            length = rng.uniform(70.0, 140.0)
            path = smooth_path(np.stack([hilum, hilum + direction * length * 0.5 + rng.normal(0, 6, 3),
                                         hilum + direction * length]), 12)
            radii = np.interp(np.linspace(0, 1, len(path)), [0, 0.5, 1], [5.0, 3.0, 1.2])
            tubes.append((path, radii, rng.uniform(40.0, 140.0)))
            for _ in range(3):
                root = hilum + direction * length * rng.uniform(0.3, 0.8)
                branch = direction + rng.normal(0, 0.6, 3)
                tip = root + branch / np.linalg.norm(branch) * rng.uniform(25.0, 60.0)
                tubes.append((np.stack([root, tip]), np.array([2.0, 0.9]), rng.uniform(0.0, 100.0)))
    paint_tubes(canvas, grid, tubes, within=in_lung)


def paint_mediastinum(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator) -> dict:
    """Heart, aorta, pulmonary trunk, SVC, azygos, airway, oesophagus and neck vessels.

    Returns the aorta's centre nodes so the abdomen can continue it.
    """
    lm = body.landmarks
    blood = rng.uniform(150.0, 220.0)
    z_heart = lm["z_T8"] - rng.uniform(0.0, 15.0)
    c = cavity_point(body, z_heart)
    heart = np.array([c["cx"] + rng.uniform(15.0, 30.0), c["y_front"] + rng.uniform(55.0, 65.0), z_heart])
    semi = np.array([62.0, 50.0, 55.0]) * rng.uniform(0.9, 1.1)
    angle = rng.uniform(20.0, 40.0)
    paint_ellipsoid(canvas, grid, heart, semi + 6.0, body.hu["fat"], angle)
    paint_ellipsoid(canvas, grid, heart, semi, rng.uniform(45.0, 65.0), angle)
    for offset, chamber in (((18, 8, -5), (28, 24, 35)), ((-15, -18, -3), (30, 20, 32)),
                            ((5, 38, 25), (30, 16, 20)), ((-38, 0, 15), (20, 20, 26))):
        paint_ellipsoid(canvas, grid, heart + np.array(offset), np.array(chamber), blood, angle)
    spine_top = cavity_point(body, lm["z_T4"])
    z_arch = lm["z_T4"] + rng.uniform(-5.0, 10.0)
    asc_top = np.array([heart[0] - 5.0, c["y_front"] + 45.0, z_arch])
    desc_top = np.array([spine_top["spine_x"] + spine_top["spine_hw"] + 4.0, spine_top["spine_y"] - 8.0, z_arch - 8.0])
    asc = np.array([[heart[0] - 8.0, heart[1] - 10.0, heart[2] + 25.0], [asc_top[0], asc_top[1], asc_top[2] - 15.0]])
    arch = smooth_path(np.array([asc[-1], asc_top + [3, 0, 12], 0.5 * (asc_top + desc_top) + [8, 5, 22],
                                 desc_top + [0, -3, 10], desc_top]), 40)
    aorta_blood = blood + rng.uniform(-10.0, 20.0)
    paint_tube(canvas, grid, np.concatenate([asc, arch]), 15.0, aorta_blood)
    nodes = []
    for z in np.arange(z_arch - 8.0, lm["z_Tlast"] - 1.0, -20.0):
        s = cavity_point(body, z)
        nodes.append((s["spine_x"] + s["spine_hw"] + 6.0, s["spine_y"] - 0.35 * s["spine_hd"], z, 12.0))
    paint_vertical_tube(canvas, grid, np.array(nodes), aorta_blood)
    # pulmonary trunk, SVC, azygos
    pa = np.array([heart + [-10, -35, 35], heart + [0, -20, 60], heart + [15, 5, 75]])
    paint_tube(canvas, grid, smooth_path(pa, 16), 13.0, blood - 10.0)
    svc_x = asc_top[0] - 28.0
    paint_vertical_tube(canvas, grid, np.array([(svc_x, asc_top[1] + 5, heart[2] + 40, 9.0),
                                                (svc_x, asc_top[1] + 5, lm["z_T1"], 9.0)]), blood + 40.0)
    az = [(cavity_point(body, z)["spine_x"] - 12.0, cavity_point(body, z)["spine_y"] - 4.0, z, 4.0)
          for z in np.linspace(lm["z_Tlast"], z_arch, 6)]
    paint_vertical_tube(canvas, grid, np.array(az), blood - 40.0)
    _airway(canvas, grid, body, rng, desc_top)
    return {"aorta_nodes": nodes, "blood_hu": aorta_blood}


def _airway(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator, desc_top: np.ndarray) -> None:
    lm = body.landmarks
    top = lm["z_top"] + 20.0
    nodes, eso = [], []
    for z in np.linspace(lm["z_carina"], top, 8):
        s = cavity_point(body, z)
        y = s["spine_y"] - s["spine_hd"] - 24.0
        nodes.append((s["cx"], y, z, 9.0))
        eso.append((s["cx"] + 6.0, y + 15.0, z, 7.0))
    trachea = np.array(nodes)
    paint_vertical_tube(canvas, grid, trachea + [0, 0, 0, 2.0], 45.0)
    paint_vertical_tube(canvas, grid, trachea, -1000.0)
    carina = trachea[0, :3]
    for side in (-1.0, 1.0):
        end = carina + np.array([side * 45.0, 18.0, -25.0])
        paint_tube(canvas, grid, np.stack([carina, end]), 6.0, -1000.0, wall=(2.0, 45.0))
    s_low = cavity_point(body, lm["z_dome_left"] - 15.0)
    eso.insert(0, (s_low["cx"] + 28.0, s_low["spine_y"] - s_low["spine_hd"] - 25.0, lm["z_dome_left"] - 15.0, 7.0))
    esophagus = np.array(eso)
    paint_vertical_tube(canvas, grid, esophagus, 40.0)
    if rng.random() < 0.4:
        paint_vertical_tube(canvas, grid, esophagus * [1, 1, 1, 0] + [0, 0, 0, 2.0], -1000.0)
    # neck: thyroid lobes, carotid arteries, jugular veins
    z_neck = lm["z_C7"] + 5.0
    s = cavity_point(body, z_neck)
    ty = s["spine_y"] - s["spine_hd"] - 24.0
    for side in (-1.0, 1.0):
        paint_ellipsoid(canvas, grid, np.array([s["cx"] + side * 18.0, ty - 4.0, z_neck]), np.array([9.0, 10.0, 20.0]),
                        rng.uniform(90.0, 130.0))
        for dx, r, hu in ((28.0, 4.0, 220.0), (40.0, 6.5, 150.0)):
            paint_vertical_tube(canvas, grid, np.array([(s["cx"] + side * dx, ty + 4.0, lm["z_T1"] - 5.0, r),
                                                        (s["cx"] + side * (dx - 4.0), ty + 8.0, top, r)]), hu)


def paint_breasts(canvas: np.ndarray, grid: Grid, body: BodyPlan, rng: np.random.Generator) -> None:
    """Female patients: breasts over the anterior chest wall (fat with glandular tissue)."""
    z = body.landmarks["z_T4"] - rng.uniform(10.0, 40.0)
    p = {k: float(v[0]) for k, v in body.at(np.array([z])).items()}
    size = rng.uniform(0.7, 1.3)
    front = p["y_back"] - 2 * p["b"]
    replace_air_or_fat = lambda values: values < -50
    behind = p["b"] * (1.0 - np.sqrt(0.75))  # the outline at x = +-a/2 lies this far behind the front
    for side in (-1.0, 1.0):
        center = np.array([side * 0.5 * p["a"], front + behind + 12.0, z])
        paint_ellipsoid(canvas, grid, center, np.array([55.0, 42.0, 55.0]) * size, body.hu["fat"], within=replace_air_or_fat)
        paint_ellipsoid(canvas, grid, center + [0, -10.0, 0], np.array([28.0, 18.0, 28.0]) * size,
                        rng.uniform(-20.0, 30.0))
