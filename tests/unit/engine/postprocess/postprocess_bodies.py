"""Synthetic vertebral-body masks with known heights, for the morphometry tests.

A body is drawn in its own frame (``s`` along the spine axis, ``t`` anterior, ``w``
lateral) on a grid of any spacing and orientation: its height at a fraction ``f`` of the AP
depth from the posterior wall is ``posterior + (anterior - posterior) * f`` minus an
optional central endplate dip (biconcave), so the true wall and middle heights are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.volume import index_to_lps


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``degrees`` (right-handed)."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    angle = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def tilted_frame(kyphosis_deg: float = 0.0, scoliosis_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(spine axis, anterior) after a sagittal (about x) then a coronal (about y) tilt."""
    turn = rotation([0, 1, 0], scoliosis_deg) @ rotation([1, 0, 0], kyphosis_deg)
    return turn @ np.array([0.0, 0.0, 1.0]), turn @ np.array([0.0, -1.0, 0.0])


def grid_affine(spacing: tuple[float, float, float], origin: np.ndarray, flip: bool = False) -> np.ndarray:
    """Canonical grid (axis0 Superior, axis1 Posterior, axis2 Left) or a flipped, permuted one."""
    affine = np.eye(4)
    if flip:  # axis0 Left, axis1 Inferior, axis2 Anterior: an unusual storage order
        affine[:3, 0] = [spacing[0], 0, 0]
        affine[:3, 1] = [0, 0, -spacing[1]]
        affine[:3, 2] = [0, -spacing[2], 0]
    else:
        affine[:3, 0] = [0, 0, spacing[0]]
        affine[:3, 1] = [0, spacing[1], 0]
        affine[:3, 2] = [spacing[2], 0, 0]
    affine[:3, 3] = origin
    return affine


@dataclass
class Body:
    posterior: float = 24.0
    anterior: float = 24.0
    dip: float = 0.0
    """Central loss of height (both endplates together), mm: biconcave deformity."""
    depth: float = 30.0
    width: float = 40.0
    elliptic: bool = False

    @property
    def middle(self) -> float:
        return 0.5 * (self.posterior + self.anterior) - self.dip

    def height_at(self, fraction: np.ndarray) -> np.ndarray:
        linear = self.posterior + (self.anterior - self.posterior) * fraction
        centred = np.abs(fraction - 0.5)
        dip = np.where(centred < 0.3, self.dip * np.cos(np.pi * centred / 0.6) ** 2, 0.0)
        return linear - dip


def draw(
    body: Body,
    spacing: tuple[float, float, float],
    axis: np.ndarray,
    anterior: np.ndarray,
    rng: np.random.Generator,
    *,
    soft: bool = False,
    flip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask, affine, true centre LPS) of ``body`` at a random sub-voxel position."""
    reach = 0.5 * np.sqrt(body.depth**2 + body.width**2 + max(body.posterior, body.anterior) ** 2) + 4
    shape = tuple(int(np.ceil(2 * reach / d)) + 1 for d in spacing)
    centre = np.array([10.0, -20.0, 300.0]) + rng.uniform(-5, 5, 3)
    affine = grid_affine(spacing, np.zeros(3), flip)
    middle_index = (np.array(shape) - 1) / 2 + rng.uniform(-0.5, 0.5, 3)
    affine[:3, 3] = centre - affine[:3, :3] @ middle_index

    occupancy = occupancy_of(body, affine, shape, centre, axis, anterior, soft)
    mask = occupancy.astype(np.float32) if soft else occupancy > 0.5
    return mask, affine, centre


def occupancy_of(
    body: Body,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    centre: np.ndarray,
    axis: np.ndarray,
    anterior: np.ndarray,
    soft: bool = False,
) -> np.ndarray:
    """Share of each voxel inside ``body`` (0 or 1 unless ``soft``: 27 sub-samples per voxel)."""
    axis = axis / np.linalg.norm(axis)
    anterior = anterior - (anterior @ axis) * axis
    anterior = anterior / np.linalg.norm(anterior)
    lateral = np.cross(axis, anterior)
    offsets = [np.zeros(3)]
    if soft:
        grid = (np.arange(3) - 1) / 3.0
        offsets = [np.array([a, b, c]) for a in grid for b in grid for c in grid]
    index = np.indices(shape).reshape(3, -1).T.astype(float)
    occupancy = np.zeros(len(index))
    for offset in offsets:
        relative = index_to_lps(affine, index + offset) - centre
        s, t, w = relative @ axis, relative @ anterior, relative @ lateral
        fraction = t / body.depth + 0.5
        if body.elliptic:
            across = (2 * w / body.width) ** 2 + (2 * t / body.depth) ** 2 <= 1
        else:
            across = (np.abs(w) <= body.width / 2) & (fraction >= 0) & (fraction <= 1)
        occupancy += across & (np.abs(s) <= body.height_at(np.clip(fraction, 0, 1)) / 2)
    return (occupancy / len(offsets)).reshape(shape)


def draw_spine(
    bodies: list[Body],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    disc_mm: float = 8.0,
    soft: bool = True,
    margin_mm: float = 10.0,
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Bodies stacked cranial to caudal along -z on one canonical grid, discs between them.

    Returns one mask per body (on the shared grid), the grid affine and the true centres.
    """
    axis, anterior = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
    slots = [max(b.posterior, b.anterior) for b in bodies]
    total = sum(slots) + disc_mm * (len(bodies) - 1) + 2 * margin_mm
    across = max(max(b.depth, b.width) for b in bodies) + 2 * margin_mm
    shape = (int(np.ceil(total / spacing[0])), int(np.ceil(across / spacing[1])), int(np.ceil(across / spacing[2])))
    affine = grid_affine(spacing, np.zeros(3))
    top = np.array([5.0, -30.0, 400.0]) + rng.uniform(-1, 1, 3)
    # axis0 runs Superior in grid_affine; index 0 is the lowest slice, so place from the top down.
    affine[:3, 3] = top - affine[:3, :3] @ np.array([shape[0] - 1, (shape[1] - 1) / 2, (shape[2] - 1) / 2])
    centres, masks = [], []
    z = top[2] - margin_mm
    for body, slot in zip(bodies, slots):
        centre = np.array([top[0], top[1], z - slot / 2])
        occupancy = occupancy_of(body, affine, shape, centre, axis, anterior, soft)
        masks.append(occupancy.astype(np.float32) if soft else occupancy > 0.5)
        centres.append(centre)
        z -= slot + disc_mm
    return masks, affine, centres
