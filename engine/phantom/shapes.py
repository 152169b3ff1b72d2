"""Painting primitives used by the anatomy modules: ellipsoids, vertical tubes, swept tubes.

A painter writes a value (HU) into the int16 canvas where its shape is, optionally only
where a predicate of the current canvas value holds (``within``: e.g. paint lung vessels
only where the canvas is already lung). Painting order is the anatomy's z-buffer: a
structure painted later covers the ones before it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.phantom.grid import Grid, polyline, stamp_spheres

Within = Callable[[np.ndarray], np.ndarray] | None


def _write(block: np.ndarray, mask: np.ndarray, value: float | np.ndarray, within: Within) -> None:
    if within is not None:
        mask = mask & within(block)
    if isinstance(value, np.ndarray):
        block[mask] = np.broadcast_to(value, block.shape)[mask].astype(np.int16)
    else:
        block[mask] = np.int16(round(value))


def ellipsoid_mask(
    grid: Grid, center: np.ndarray, semi: np.ndarray, angle_deg: float = 0.0
) -> tuple[tuple[slice, slice, slice], np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """Slices, mask and normalised local coordinates of an ellipsoid (rotated about z)."""
    center = np.asarray(center, dtype=float)
    semi = np.asarray(semi, dtype=float)
    reach = np.array([max(semi[0], semi[1])] * 2 + [semi[2]]) if angle_deg else semi
    box = grid.box(center - reach, center + reach)
    if box is None:
        return None
    dx, dy, dz = box.x - center[0], box.y - center[1], box.z - center[2]
    if angle_deg:
        c, s = np.float32(np.cos(np.deg2rad(angle_deg))), np.float32(np.sin(np.deg2rad(angle_deg)))
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    nx, ny, nz = dx / np.float32(semi[0]), dy / np.float32(semi[1]), dz / np.float32(semi[2])
    mask = nx * nx + ny * ny + nz * nz <= 1.0
    return box.slices, mask, (nx, ny, nz)


def paint_ellipsoid(
    canvas: np.ndarray,
    grid: Grid,
    center: np.ndarray,
    semi: np.ndarray,
    value: float,
    angle_deg: float = 0.0,
    within: Within = None,
) -> None:
    """Fill an ellipsoid (semi-axes in x, y, z mm, optionally rotated about z)."""
    found = ellipsoid_mask(grid, center, semi, angle_deg)
    if found is None:
        return
    slices, mask, _ = found
    _write(canvas[slices], mask, value, within)


def paint_vertical_tube(
    canvas: np.ndarray,
    grid: Grid,
    nodes: np.ndarray,
    value: float,
    within: Within = None,
) -> None:
    """A tube that runs mostly head-to-foot: nodes (N, 4) of x, y, z, radius, or (N, 5)
    of x, y, z, half width, half depth for an elliptical section.

    Each slice gets the section interpolated at its height, which is exact for an axial
    cut of a vertical tube and cheap (no 3-D distance).
    """
    nodes = np.asarray(nodes, dtype=float)
    nodes = nodes[np.argsort(nodes[:, 2])]
    if nodes.shape[1] == 4:
        nodes = np.concatenate([nodes, nodes[:, 3:4]], axis=1)
    reach = nodes[:, 3:5].max(axis=0)
    low = np.array([nodes[:, 0].min() - reach[0], nodes[:, 1].min() - reach[1], nodes[0, 2]])
    high = np.array([nodes[:, 0].max() + reach[0], nodes[:, 1].max() + reach[1], nodes[-1, 2]])
    box = grid.box(low, high)
    if box is None:
        return
    z = box.z[:, 0, 0].astype(float)
    cx, cy, rx, ry = (np.interp(z, nodes[:, 2], nodes[:, k]).astype(np.float32)[:, None, None] for k in (0, 1, 3, 4))
    mask = ((box.x - cx) / np.maximum(rx, 1e-3)) ** 2 + ((box.y - cy) / np.maximum(ry, 1e-3)) ** 2 <= 1.0
    _write(canvas[box.slices], mask, value, within)


def paint_oriented_ellipsoid(
    canvas: np.ndarray,
    grid: Grid,
    center: np.ndarray,
    frame: np.ndarray,
    semi: np.ndarray,
    value: float,
    within: Within = None,
    exponent: float = 2.0,
) -> None:
    """An ellipsoid whose axes are the columns of ``frame`` (e.g. a vertebra's frame);
    an ``exponent`` above 2 makes it a box-like superellipsoid."""
    center, semi = np.asarray(center, dtype=float), np.asarray(semi, dtype=float)
    reach = np.abs(frame) @ semi
    box = grid.box(center - reach, center + reach)
    if box is None:
        return
    d = (box.x - np.float32(center[0]), box.y - np.float32(center[1]), box.z - np.float32(center[2]))
    total = 0.0
    for axis in range(3):
        f = frame[:, axis].astype(np.float32)
        local = d[0] * f[0] + d[1] * f[1] + d[2] * f[2]
        scaled = np.abs(local / np.float32(semi[axis]))
        total = total + (scaled * scaled if exponent == 2.0 else scaled ** np.float32(exponent))
    _write(canvas[box.slices], total <= 1.0, value, within)


def _dense(grid: Grid, points: np.ndarray, radius: np.ndarray, step_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Sphere centres and radii along a polyline, close enough for a smooth tube."""
    points = np.asarray(points, dtype=float)
    radius = np.broadcast_to(np.asarray(radius, dtype=float), (len(points),))
    step = max(float(np.min(np.abs(grid.steps))) * 0.5, float(radius.min()) * step_factor, 0.2)
    dense = polyline(points, step)
    lengths = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    dense_arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    return dense, np.interp(dense_arc, lengths, radius)


def tube_indices(grid: Grid, points: np.ndarray, radius: float | np.ndarray, step_factor: float = 1 / 3) -> np.ndarray:
    """Flat indices of a tube swept along a polyline (points (N, 3)), any direction."""
    dense, radii = _dense(grid, points, np.asarray(radius, dtype=float), step_factor)
    return stamp_spheres(grid, dense, radii)  # type: ignore[return-value]


def paint_indices(canvas: np.ndarray, indices: np.ndarray, value: float | np.ndarray, within: Within = None) -> None:
    """Write a value (or one value per index) at flat indices, optionally where ``within`` holds."""
    if len(indices) == 0:
        return
    flat = canvas.reshape(-1)
    if within is not None:
        keep = within(flat[indices])
        indices = indices[keep]
        if isinstance(value, np.ndarray):
            value = value[keep]
    if isinstance(value, np.ndarray):
        flat[indices] = np.rint(value).astype(np.int16)
    else:
        flat[indices] = np.int16(round(value))


def paint_tube(
    canvas: np.ndarray,
    grid: Grid,
    points: np.ndarray,
    radius: float | np.ndarray,
    value: float,
    within: Within = None,
    wall: tuple[float, float] | None = None,
) -> None:
    """A tube along a polyline; ``wall`` = (thickness mm, HU) paints a wall first."""
    paint_tubes(canvas, grid, [(points, radius, value)], within=within, wall=wall)


def paint_tubes(
    canvas: np.ndarray,
    grid: Grid,
    tubes: list[tuple[np.ndarray, float | np.ndarray, float]],
    within: Within = None,
    wall: tuple[float, float] | None = None,
    step_factor: float = 1 / 3,
) -> None:
    """Many tubes (points, radius, value) in one stamping pass; walls of all first."""
    if not tubes:
        return
    centres, radii, owners = [], [], []
    for k, (points, radius, _) in enumerate(tubes):
        dense, r = _dense(grid, points, np.asarray(radius, dtype=float), step_factor)
        centres.append(dense)
        radii.append(r)
        owners.append(np.full(len(dense), k))
    centres_all, radii_all, owner_all = np.concatenate(centres), np.concatenate(radii), np.concatenate(owners)
    values = np.array([value for _, _, value in tubes], dtype=np.float32)
    thickness = wall[0] if wall is not None else 0.0
    idx, owner, dist2 = stamp_spheres(grid, centres_all, radii_all + thickness, return_owner=True)
    if within is not None:  # decide on the canvas as it was before this call
        keep = within(canvas.reshape(-1)[idx])
        idx, owner, dist2 = idx[keep], owner[keep], dist2[keep]
    if wall is not None:
        paint_indices(canvas, idx, wall[1])
        lumen = dist2 <= (radii_all[owner] ** 2).astype(np.float32)
        idx, owner = idx[lumen], owner[lumen]
    paint_indices(canvas, idx, values[owner_all[owner]])


def smooth_path(anchors: np.ndarray, count: int = 64) -> np.ndarray:
    """``count`` points evenly spaced along a smooth (Catmull-Rom) curve through anchors."""
    anchors = np.asarray(anchors, dtype=float)
    if len(anchors) < 3:
        dense = anchors
    else:
        padded = np.concatenate([[2 * anchors[0] - anchors[1]], anchors, [2 * anchors[-1] - anchors[-2]]])
        t = np.linspace(0.0, 1.0, 16, endpoint=False)[:, None]
        pieces = []
        for k in range(1, len(padded) - 2):
            p0, p1, p2, p3 = padded[k - 1], padded[k], padded[k + 1], padded[k + 2]
            pieces.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                                 + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
        pieces.append(anchors[-1:])
        dense = np.concatenate(pieces, axis=0)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    at = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(at, arc, dense[:, k]) for k in range(3)], axis=1)
