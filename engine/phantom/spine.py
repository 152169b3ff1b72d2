"""Geometry of the vertebral column: levels, sizes, body shape and the curved centerline.

Pure math, no voxels. Each vertebra lives in its own orthonormal frame (``u`` to the
patient's left, ``v`` posterior, ``w`` along the spine towards the head). Its body is a
kidney-shaped cylinder whose superior and inferior endplates are surfaces ``w_top(u, v)``
and ``w_bot(u, v)``; the heights that grading uses (anterior, middle, posterior on the
mid-sagittal plane ``u = 0``) are properties of those surfaces, so the truth written for
a vertebra is exactly what a measurement of its rendered body gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MEASURE_INSET = 0.1
"""Anterior and posterior heights are taken this share of the body depth inside the walls."""


@dataclass
class Lesion:
    """Something planted inside or on one vertebra, in its local frame (mm)."""

    kind: str  # "sclerotic", "lytic", "schmorl", "screw"
    center: tuple[float, float, float]
    radius: float
    value_hu: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class Vertebra:
    """One vertebra: nominal sizes, actual body heights, densities and placement."""

    level: str
    region: str  # "C", "T", "L" or "S" (S1..S5 segments of the sacrum)
    h0: float  # expected (undeformed) body height, mm
    half_width: float
    half_depth: float
    canal_half_width: float
    canal_half_depth: float
    arch: float
    spinous_length: float
    spinous_angle_deg: float
    spinous_height: float
    transverse_length: float
    transverse_radius: float
    transverse_back_deg: float
    ribs: bool = False
    labelled: bool = True
    anterior: float = 0.0
    middle: float = 0.0
    posterior: float = 0.0
    concavity: float = 1.5
    waist: float = 0.06
    sup_share: float = 0.5
    morphology: str = "none"
    grade: int = 0
    sacralised: bool = False
    cancellous_hu: float = 200.0
    cortical_hu: float = 600.0
    cortex_mm: float = 1.2
    compaction_hu: float = 0.0  # denser band under a collapsed endplate
    endplate_sclerosis: bool = False
    osteophytes: bool = False
    lesions: list[Lesion] = field(default_factory=list)
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    frame: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns e_u, e_v, e_w

    def __post_init__(self) -> None:
        if self.anterior <= 0:
            self.anterior = self.middle = self.posterior = self.h0

    # ---- body shape in the local frame ------------------------------------------------
    def measure_positions(self) -> tuple[float, float, float]:
        """v of the anterior, middle and posterior height measurements on u = 0."""
        front, back = -self.half_depth, self.half_depth - self.concavity
        inset = MEASURE_INSET * (back - front)
        v_a, v_p = front + inset, back - inset
        return v_a, 0.5 * (v_a + v_p), v_p

    def endplates(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w_bot, w_top) of the body at in-plane local position (u, v)."""
        v_a, v_m, v_p = self.measure_positions()
        slope = (self.posterior - self.anterior) / (v_p - v_a)
        loss_linear = self.posterior - (self.anterior + slope * (v - v_a))
        dip = max(0.5 * (self.anterior + self.posterior) - self.middle, 0.0)
        ru, rv = 0.8 * self.half_width, 0.5 * (v_p - v_a)
        dimple = dip * np.maximum(0.0, 1.0 - (u / ru) ** 2 - ((v - v_m) / rv) ** 2)
        total = loss_linear + dimple
        w_top = 0.5 * self.posterior - self.sup_share * total
        w_bot = -0.5 * self.posterior + (1.0 - self.sup_share) * total
        return w_bot, w_top

    def heights(self) -> dict[str, float]:
        """Anterior, middle and posterior heights read back from the endplate surfaces."""
        out = {}
        for name, v in zip(("anterior", "middle", "posterior"), self.measure_positions()):
            w_bot, w_top = self.endplates(np.float64(0.0), np.float64(v))
            out[name] = float(w_top - w_bot)
        return out

    def height_loss(self) -> float:
        """1 - smallest height / expected height (Genant's quantitative deformity)."""
        return 1.0 - min(self.heights().values()) / self.h0

    def axial_extent(self) -> tuple[float, float]:
        """(w_bot, w_top) along the body axis at the centre (u = v = 0)."""
        w_bot, w_top = self.endplates(np.float64(0.0), np.float64(0.0))
        return float(w_bot), float(w_top)

    def surface_points(self, count: int = 24) -> np.ndarray:
        """LPS points on the body's surface (rim of both endplates and centres)."""
        angle = np.linspace(0, 2 * np.pi, count, endpoint=False)
        u = np.concatenate([self.half_width * np.cos(angle), [0.0]])
        v = np.concatenate([self.half_depth * np.sin(angle), [0.0]])
        w_bot, w_top = self.endplates(u, v)
        local = np.concatenate(
            [np.stack([u, v, w_bot], axis=1), np.stack([u, v, w_top], axis=1)], axis=0
        )
        return self.to_world(local)

    def to_world(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local) @ self.frame.T + self.center

    def to_local(self, world: np.ndarray) -> np.ndarray:
        return (np.asarray(world) - self.center) @ self.frame


# ---- nominal sizes --------------------------------------------------------------------
def _lerp(a: float, b: float, f: float) -> float:
    return a + (b - a) * f


def nominal_vertebra(level: str, region: str, f: float, scale: float) -> Vertebra:
    """Typical adult sizes at fraction ``f`` (0 = top, 1 = bottom) of a region, times ``scale``.

    Body heights grow from ~14.5 mm (T1) to ~27 mm (L5), widths from ~25 to ~50 mm,
    depths from ~17 to ~35 mm (CLINICAL.md figures).
    """
    if region == "C":
        dims = {"h0": _lerp(12.5, 14.0, f), "half_width": _lerp(8.5, 12.0, f), "half_depth": _lerp(7.5, 8.0, f),
                "canal_half_width": 12.0, "canal_half_depth": 7.0, "arch": 4.0,
                "spinous_length": _lerp(14.0, 32.0, f ** 2), "spinous_angle_deg": 15.0, "spinous_height": 7.0,
                "transverse_length": 10.0, "transverse_radius": 3.0, "transverse_back_deg": 10.0}
    elif region == "T":
        dims = {"h0": _lerp(14.5, 23.0, f ** 1.1), "half_width": _lerp(12.5, 20.0, f), "half_depth": _lerp(8.5, 15.0, f),
                "canal_half_width": 8.5, "canal_half_depth": 7.5, "arch": _lerp(5.0, 7.0, f),
                "spinous_length": _lerp(34.0, 30.0, f), "spinous_angle_deg": 30.0 + 30.0 * np.sin(np.pi * f),
                "spinous_height": _lerp(8.0, 12.0, f),
                "transverse_length": _lerp(22.0, 13.0, f), "transverse_radius": _lerp(4.5, 5.0, f),
                "transverse_back_deg": 30.0}
    elif region == "L":
        dims = {"h0": _lerp(24.0, 27.0, f), "half_width": _lerp(21.0, 25.0, f), "half_depth": _lerp(15.5, 17.5, f),
                "canal_half_width": _lerp(11.0, 12.5, f), "canal_half_depth": 8.5, "arch": _lerp(8.0, 11.0, f),
                "spinous_length": _lerp(30.0, 24.0, f), "spinous_angle_deg": 5.0, "spinous_height": _lerp(15.0, 13.0, f),
                "transverse_length": 18.0 + 9.0 * np.sin(np.pi * f), "transverse_radius": _lerp(5.0, 7.0, f),
                "transverse_back_deg": 8.0}
    else:  # sacral segment S1..S5, f = 0 for S1
        dims = {"h0": _lerp(28.0, 10.0, f), "half_width": _lerp(24.0, 10.0, f), "half_depth": _lerp(17.0, 8.0, f),
                "canal_half_width": _lerp(13.0, 6.0, f), "canal_half_depth": _lerp(6.0, 3.0, f), "arch": _lerp(9.0, 5.0, f),
                "spinous_length": _lerp(10.0, 4.0, f), "spinous_angle_deg": 20.0, "spinous_height": 8.0,
                "transverse_length": 0.0, "transverse_radius": 0.0, "transverse_back_deg": 0.0}
    scaled = {k: (v * scale if k not in ("spinous_angle_deg", "transverse_back_deg") else v)
              for k, v in dims.items()}
    return Vertebra(level=level, region=region, **scaled)  # type: ignore[arg-type]


def level_names(n_thoracic: int, n_lumbar: int) -> list[tuple[str, str, float]]:
    """(level, region, fraction within region) from C4 down to S5, top first."""
    names: list[tuple[str, str, float]] = []
    for k in range(4, 8):
        names.append((f"C{k}", "C", (k - 4) / 3))
    for k in range(1, n_thoracic + 1):
        names.append((f"T{k}", "T", (k - 1) / (n_thoracic - 1)))
    for k in range(1, n_lumbar + 1):
        names.append((f"L{k}", "L", (k - 1) / (n_lumbar - 1)))
    for k in range(1, 6):
        names.append((f"S{k}", "S", (k - 1) / 4))
    return names


# ---- centerline ------------------------------------------------------------------------
@dataclass
class Centerline:
    """The spine's axis sampled every ``step`` mm of arc length ``s`` (0 at S1's centre)."""

    s: np.ndarray
    points: np.ndarray  # (N, 3) LPS
    tangents: np.ndarray  # (N, 3) unit, towards the head
    rotation_deg: np.ndarray  # axial rotation of the vertebrae (scoliosis)

    def at(self, s: float) -> tuple[np.ndarray, np.ndarray, float]:
        point = np.array([np.interp(s, self.s, self.points[:, k]) for k in range(3)])
        tangent = np.array([np.interp(s, self.s, self.tangents[:, k]) for k in range(3)])
        return point, tangent / np.linalg.norm(tangent), float(np.interp(s, self.s, self.rotation_deg))

    def balanced(self, s_top: float, s_bottom: float, lean_mm: float = 0.0) -> Centerline:
        """The same curve rotated about x (pivot at ``s_bottom``) so that the point at
        ``s_top`` lies ``lean_mm`` anterior (-y) of the bottom point: a supine patient's
        column lies along the table whatever its standing curvature."""
        top, _, _ = self.at(s_top)
        bottom, _, _ = self.at(s_bottom)
        current = np.arctan2(-(top[1] - bottom[1]), top[2] - bottom[2])
        wanted = np.arcsin(np.clip(lean_mm / np.linalg.norm(top[1:] - bottom[1:]), -1, 1))
        angle = wanted - current  # rotation towards anterior (-y) for a positive angle
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        points = (self.points - bottom) @ rotation.T + bottom
        tangents = self.tangents @ rotation.T
        return Centerline(s=self.s, points=points, tangents=tangents, rotation_deg=self.rotation_deg)

    def xy_at_z(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spine axis x and y at heights z (the part above the sacral curve, clamped)."""
        keep = self.s >= -20.0
        zs, order = self.points[keep, 2], np.argsort(self.points[keep, 2])
        pts = self.points[keep][order]
        return np.interp(z, zs[order], pts[:, 0]), np.interp(z, zs[order], pts[:, 1])


def frame_from(tangent: np.ndarray, rotation_deg: float) -> np.ndarray:
    """Orthonormal frame (columns e_u, e_v, e_w) with e_w along the tangent."""
    e_w = tangent / np.linalg.norm(tangent)
    posterior = np.array([0.0, 1.0, 0.0])
    e_v = posterior - e_w * (posterior @ e_w)
    e_v /= np.linalg.norm(e_v)
    e_u = np.cross(e_v, e_w)
    angle = np.deg2rad(rotation_deg)
    e_u, e_v = np.cos(angle) * e_u + np.sin(angle) * e_v, -np.sin(angle) * e_u + np.cos(angle) * e_v
    return np.stack([e_u, e_v, e_w], axis=1)


def integrate_centerline(
    s_anchor: np.ndarray,
    theta_deg: np.ndarray,
    lateral: callable,  # type: ignore[valid-type]
    rotation: callable,  # type: ignore[valid-type]
    s_min: float,
    s_max: float,
    origin: np.ndarray,
    step: float = 0.5,
) -> Centerline:
    """The axis from a sagittal tilt profile theta(s) (degrees, + = tilted anteriorly).

    ``lateral(s)`` gives the scoliotic left-right offset (mm) and ``rotation(s)`` the axial
    rotation (degrees). The sagittal curve starts at ``origin`` for s = 0 (S1's centre).
    """
    s = np.arange(s_min, s_max + step, step)
    theta = np.deg2rad(np.interp(s, s_anchor, theta_deg))
    dy, dz = -np.sin(theta), np.cos(theta)
    y = np.concatenate([[0.0], np.cumsum(0.5 * (dy[1:] + dy[:-1]) * step)])
    z = np.concatenate([[0.0], np.cumsum(0.5 * (dz[1:] + dz[:-1]) * step)])
    zero = int(np.argmin(np.abs(s)))
    y, z = y - y[zero], z - z[zero]
    x = np.asarray(lateral(s), dtype=float)
    points = np.stack([x, y, z], axis=1) + origin
    tangents = np.gradient(points, step, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    return Centerline(s=s, points=points, tangents=tangents, rotation_deg=np.asarray(rotation(s), dtype=float))
