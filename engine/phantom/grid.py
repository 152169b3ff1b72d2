"""The voxel grid a phantom is painted on, and the two painting primitives.

The grid is described by three monotonic coordinate vectors in LPS millimetres, one per
array axis (slice, row, column), so the same code paints a head-first study (z falling
with the slice index, x rising with the column) and a feet-first one (z rising, x
falling) with no flip afterwards. Structures are painted into *boxes*: the sub-block of
the grid that holds a structure's bounding box, with broadcastable coordinate arrays.
Tubes, surfaces and blobs of any direction are painted by stamping spheres along
sampled points (:func:`stamp_spheres`), which returns flat voxel indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A sub-block of the grid: its slices and its voxel-centre coordinates (float32).

    ``z`` has shape (nz, 1, 1), ``y`` (1, ny, 1) and ``x`` (1, 1, nx), so expressions in
    them broadcast to the block's shape.
    """

    slices: tuple[slice, slice, slice]
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.shape[0], self.y.shape[1], self.x.shape[2])


def _span(values: np.ndarray, low: float, high: float) -> slice:
    """Index range of a monotonic vector whose values fall in [low, high]."""
    if values[-1] >= values[0]:
        start = int(np.searchsorted(values, low, side="left"))
        stop = int(np.searchsorted(values, high, side="right"))
    else:
        reversed_values = values[::-1]
        n = len(values)
        stop = n - int(np.searchsorted(reversed_values, low, side="left"))
        start = n - int(np.searchsorted(reversed_values, high, side="right"))
    return slice(max(start, 0), max(min(stop, len(values)), max(start, 0)))


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates of a (slice, row, column) grid: z, y and x in LPS mm."""

    zs: np.ndarray
    ys: np.ndarray
    xs: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.zs), len(self.ys), len(self.xs))

    @property
    def steps(self) -> np.ndarray:
        """Signed step of each axis (z, y, x order of the array axes)."""
        return np.array([self._step(self.zs), self._step(self.ys), self._step(self.xs)])

    @staticmethod
    def _step(values: np.ndarray) -> float:
        return float(values[1] - values[0]) if len(values) > 1 else 1.0

    def affine(self) -> np.ndarray:
        """Index (slice, row, column) -> LPS affine of this grid."""
        affine = np.zeros((4, 4))
        affine[3, 3] = 1.0
        affine[2, 0] = self._step(self.zs)
        affine[1, 1] = self._step(self.ys)
        affine[0, 2] = self._step(self.xs)
        affine[:3, 3] = (self.xs[0], self.ys[0], self.zs[0])
        return affine

    def box(self, low: np.ndarray, high: np.ndarray) -> Box | None:
        """The block holding the LPS box [low, high] (x, y, z order), or None when empty."""
        sz = _span(self.zs, float(low[2]), float(high[2]))
        sy = _span(self.ys, float(low[1]), float(high[1]))
        sx = _span(self.xs, float(low[0]), float(high[0]))
        if sz.stop <= sz.start or sy.stop <= sy.start or sx.stop <= sx.start:
            return None
        return Box(
            slices=(sz, sy, sx),
            z=self.zs[sz].astype(np.float32)[:, None, None],
            y=self.ys[sy].astype(np.float32)[None, :, None],
            x=self.xs[sx].astype(np.float32)[None, None, :],
        )

    def slab(self, start: int, stop: int) -> Box:
        """Whole slices start..stop-1 as a box."""
        sz = slice(start, stop)
        return Box(
            slices=(sz, slice(0, len(self.ys)), slice(0, len(self.xs))),
            z=self.zs[sz].astype(np.float32)[:, None, None],
            y=self.ys.astype(np.float32)[None, :, None],
            x=self.xs.astype(np.float32)[None, None, :],
        )

    def to_index(self, points_xyz: np.ndarray) -> np.ndarray:
        """LPS points (N, 3) in x, y, z order -> fractional (slice, row, column) indices."""
        points = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        origin = np.array([self.zs[0], self.ys[0], self.xs[0]])
        return (points[:, ::-1] - origin) / self.steps


def stamp_spheres(
    grid: Grid,
    centers_xyz: np.ndarray,
    radii: np.ndarray | float,
    max_block: int = 3_000_000,
    return_owner: bool = False,
):
    """Flat (C-order) indices of the voxels whose centre lies in the union of spheres.

    ``centers_xyz`` is (N, 3) LPS mm; ``radii`` one radius or one per sphere. Spheres are
    grouped by radius (rounded to 0.25 mm) so each group shares one offset template (only
    the offsets that can fall within the radius of a centre inside the base voxel), and
    processed in batches of at most ``max_block`` candidates. Indices may repeat. With
    ``return_owner`` the index of the sphere that produced each voxel and the squared
    distance (mm^2) to its centre are returned too: ``(indices, owners, dist2)``.
    """
    centers = np.asarray(centers_xyz, dtype=np.float64).reshape(-1, 3)
    empty = np.empty(0, dtype=np.int64)
    if len(centers) == 0:
        return (empty, empty, np.empty(0, np.float32)) if return_owner else empty
    radius = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(centers),))
    radius = np.round(radius * 4.0) / 4.0
    index = grid.to_index(centers)
    steps = np.abs(grid.steps)
    shape = np.array(grid.shape)
    out: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    distances: list[np.ndarray] = []
    big = np.float32(1e30)
    for r in np.unique(radius):
        if r <= 0:
            continue
        which = np.nonzero(radius == r)[0]
        chosen = index[which]
        half = np.ceil(r / steps).astype(int) + 1
        axes = [np.arange(-h, h + 2) for h in half]
        template = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        # a centre anywhere in [0, 1)^3 of its base voxel: keep offsets whose nearest point
        # of that unit cell is within r
        nearest = np.clip(template, 0, 1) - template
        template = template[np.sqrt(np.sum((nearest * steps) ** 2, axis=1)) <= r]
        t_axis = [template[:, a] - axes[a][0] for a in range(3)]  # positions in the per-axis tables
        batch = max(1, max_block // len(template))
        strides = (shape[1] * shape[2], shape[2], 1)
        for start in range(0, len(chosen), batch):
            part = chosen[start : start + batch]
            base = np.floor(part).astype(np.int64)
            sq, flat_axis = [], []
            for a in range(3):  # separable: squared distance and flat offset per axis
                pos = base[:, a : a + 1] + axes[a][None, :]
                d = ((pos - part[:, a : a + 1]) * steps[a]).astype(np.float32)
                d2 = d * d
                d2[(pos < 0) | (pos >= shape[a])] = big
                sq.append(d2)
                flat_axis.append(pos * strides[a])
            dist2 = sq[0][:, t_axis[0]] + sq[1][:, t_axis[1]] + sq[2][:, t_axis[2]]
            inside = dist2 <= np.float32(r * r)
            p_idx, t_idx = np.nonzero(inside)
            out.append(flat_axis[0][p_idx, t_axis[0][t_idx]] + flat_axis[1][p_idx, t_axis[1][t_idx]]
                       + flat_axis[2][p_idx, t_axis[2][t_idx]])
            if return_owner:
                owners.append(which[start + p_idx])
                distances.append(dist2[inside])
    flat = np.concatenate(out) if out else empty
    if return_owner:
        if not owners:
            return flat, empty, np.empty(0, np.float32)
        return flat, np.concatenate(owners), np.concatenate(distances)
    return flat


def polyline(points: np.ndarray, step: float) -> np.ndarray:
    """Points (N, 3) resampled along their polyline every ``step`` mm (ends kept)."""
    points = np.asarray(points, dtype=np.float64)
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    count = max(int(np.ceil(arc[-1] / max(step, 1e-3))) + 1, 2)
    at = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(at, arc, points[:, k]) for k in range(3)], axis=1)
