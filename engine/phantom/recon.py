"""What the scanner adds: the patient table, noise, kernel blur, slice profile, HU range.

Noise is white noise (uniform bytes, Gaussian once blurred) added *before* the blur, so it comes out correlated like
real CT noise, with its standard deviation set to the kernel's figure after the blur (the
reduction factor is measured on the actual filter). Noise grows with the body's cross
section (shoulders, pelvis). The slice sensitivity profile is a Gaussian along z of FWHM
equal to the slice thickness, applied on the grid it is given: by default the slices
themselves, painted at their centres, where its sigma is about half a slice (a structure
painted in one slice barely reaches the next); with ``PhantomConfig.partial_volume_slices``
a grid at most 0.5 mm apart, where it averages the anatomy over each slice as a scanner does
(:func:`engine.phantom.render.render`). Outside the reconstruction circle the image is -1024 HU.
Everything runs slab by slab in float32 so the memory stays near one int16 volume.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.phantom.acquisition import Acquisition
from engine.phantom.body import BodyPlan
from engine.phantom.grid import Grid

HU_MIN, HU_MAX = -1024, 3071
SLAB = 32
HALO = 3
TRUNCATE = 2.0
"""Gaussian kernels are cut at 2 sigma (the kernel gain is measured on the same cut)."""
UNIFORM_SD = float(np.sqrt((256.0 ** 2 - 1.0) / 12.0))
"""Standard deviation of a uniform int8 byte."""


def paint_table(canvas: np.ndarray, grid: Grid, body: BodyPlan) -> None:
    """A curved carbon-fibre table top (dense skins, foam core) under the patient's back."""
    y0 = body.table_y()
    x = grid.xs.astype(np.float32)[None, :]
    y = grid.ys.astype(np.float32)[:, None]
    top = np.float32(y0) - np.float32(0.0005) * x * x
    depth = y - top
    inside = (np.abs(x) < 230.0) & (depth >= 0) & (depth < 40.0)
    skins = inside & ((depth < 3.0) | (depth >= 36.0))
    core = inside & ~skins
    for k in range(grid.shape[0]):
        air = canvas[k] < -900
        canvas[k][core & air] = -920
        canvas[k][skins & air] = 180


def _kernel_gain(sigma: tuple[float, float, float]) -> float:
    """Standard deviation of filtered unit white noise for this Gaussian (measured)."""
    size = 2 * int(np.ceil(3 * max(sigma))) + 3
    delta = np.zeros((size, size, size), dtype=np.float64)
    delta[size // 2, size // 2, size // 2] = 1.0
    response = ndimage.gaussian_filter(delta, sigma=sigma, mode="constant", truncate=TRUNCATE)
    return float(np.sqrt(np.sum(response ** 2)))


def reconstruct(canvas: np.ndarray, grid: Grid, acquisition: Acquisition, body: BodyPlan, seed: int) -> None:
    """Blur, noise and clip the painted canvas in place (int16 HU afterwards)."""
    rng = np.random.default_rng(seed)
    pixel = acquisition.pixel_spacing_mm
    sigma_xy = acquisition.blur_mm / pixel
    sigma_z = (acquisition.thickness_mm / 2.355) / acquisition.spacing_mm
    sigma = (sigma_z, sigma_xy, sigma_xy)
    gain = _kernel_gain(sigma)
    weights = body.at(grid.zs)
    area = weights["a"] * weights["b"]
    scale = np.clip(np.sqrt(area / np.median(area)), 0.75, 1.6).astype(np.float32)
    yy = (grid.ys - acquisition.center_xy[1]).astype(np.float32)[:, None]
    xx = (grid.xs - acquisition.center_xy[0]).astype(np.float32)[None, :]
    outside = (xx * xx + yy * yy) > np.float32((acquisition.fov_mm / 2.0) ** 2)
    n = grid.shape[0]
    previous: tuple[int, np.ndarray] | None = None
    for start in range(0, n, SLAB):
        stop = min(start + SLAB, n)
        lo, hi = max(start - HALO, 0), min(stop + HALO, n)
        slab = canvas[lo:hi].astype(np.float32)  # read before the previous slab is written back
        if previous is not None:
            canvas[previous[0]: previous[0] + len(previous[1])] = previous[1]
        if acquisition.noise_hu > 0:  # uniform bytes: the blur makes them Gaussian (and it is 5x cheaper)
            noise = np.frombuffer(rng.bytes(slab.size), dtype=np.int8).reshape(slab.shape).astype(np.float32)
            noise *= (np.float32(acquisition.noise_hu / gain / UNIFORM_SD) * scale[lo:hi])[:, None, None]
            slab += noise
        slab = ndimage.gaussian_filter(slab, sigma=sigma, mode="nearest", truncate=TRUNCATE)
        result = slab[start - lo: start - lo + (stop - start)]
        np.clip(np.rint(result), HU_MIN, HU_MAX, out=result)
        result[:, outside] = HU_MIN
        previous = (start, result.astype(np.int16))
    if previous is not None:
        canvas[previous[0]: previous[0] + len(previous[1])] = previous[1]
