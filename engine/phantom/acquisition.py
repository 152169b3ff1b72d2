"""Acquisition of a phantom study: coverage, slice spacing, pixel grid, position, kernel.

The scan covers what a thoraco-abdomino-pelvic CT covers (lower neck to below the pubic
symphysis) unless partial coverage is planted; the slice spacing is drawn among those that
fit the coverage into the allowed slice count; the field of view follows the patient's
width (0.6-0.9 mm pixels on a 512 matrix). Head-first studies store slices from head to
feet with x (columns) to the patient's left; feet-first studies from feet to head with
columns to the patient's right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.phantom.body import BodyPlan
from engine.phantom.config import PhantomConfig
from engine.phantom.grid import Grid
from engine.phantom.plan import SpinePlan

KERNELS = (  # name, blur sigma (mm), noise (HU at 1.25 mm)
    ("STANDARD", 0.60, 15.0), ("SOFT", 0.75, 11.0), ("B30f", 0.65, 13.0), ("B31f", 0.62, 15.0),
    ("Br40", 0.55, 18.0), ("I30f", 0.65, 12.0), ("FC18", 0.62, 14.0), ("B", 0.58, 16.0),
)


@dataclass
class Acquisition:
    position: str  # "HFS" or "FFS"
    matrix: int
    fov_mm: float
    spacing_mm: float
    thickness_mm: float
    n_slices: int
    z_top: float
    z_bottom: float
    center_xy: tuple[float, float]
    kernel: str
    blur_mm: float
    noise_hu: float
    kvp: int
    signed: bool
    coverage: str  # "full", "superior_partial", "inferior_partial", "slice_budget", "levels"

    @property
    def pixel_spacing_mm(self) -> float:
        return self.fov_mm / self.matrix

    def grid(self) -> Grid:
        """The voxel-centre grid in storage order (see the module docstring)."""
        k = np.arange(self.n_slices)
        if self.position == "HFS":
            zs = self.z_top - k * self.spacing_mm
        else:
            zs = self.z_bottom + k * self.spacing_mm
        offsets = (np.arange(self.matrix) - (self.matrix - 1) / 2.0) * self.pixel_spacing_mm
        xs = self.center_xy[0] + (offsets if self.position == "HFS" else -offsets)
        ys = self.center_xy[1] + offsets
        return Grid(zs=zs, ys=ys, xs=xs)


def _coverage(rng: np.random.Generator, config: PhantomConfig, spine: SpinePlan, body: BodyPlan) -> tuple[float, float, str]:
    z_of = {v.level: float(v.center[2]) for v in spine.vertebrae}
    lm = body.landmarks
    if config.fov_levels is not None:
        names = [v.level for v in spine.vertebrae]
        top, bottom = config.fov_levels
        for level in (top, bottom):
            if level not in names:
                raise ValueError(f"fov_levels names {level}, which this spine does not have ({names})")
        i_top, i_bottom = names.index(top), names.index(bottom)
        above = z_of[names[i_top - 1]] if i_top > 0 else z_of[top] + 30.0
        below = z_of[names[i_bottom + 1]] if i_bottom + 1 < len(names) else z_of[bottom] - 30.0
        return above, below, "levels"
    z_top = rng.uniform(z_of["T1"], z_of["C6"])  # thoracic inlet to lower neck
    z_bottom = lm["z_sym"] - rng.uniform(5.0, 35.0)
    kind = "full"
    if rng.random() < config.partial_coverage_probability:
        if rng.random() < 0.5:
            z_top, kind = rng.uniform(z_of["T9"], z_of["T4"]), "superior_partial"
        else:
            lumbar = [v for v in spine.vertebrae if v.region == "L"]
            z_bottom, kind = rng.uniform(z_of[lumbar[-1].level], z_of["L3"]), "inferior_partial"
    return float(z_top), float(z_bottom), kind


def sample_acquisition(rng: np.random.Generator, config: PhantomConfig, spine: SpinePlan, body: BodyPlan) -> Acquisition:
    z_top, z_bottom, coverage = _coverage(rng, config, spine, body)
    length = z_top - z_bottom
    choices = np.array(sorted(config.spacing_choices_mm))
    counts = np.round(length / choices).astype(int) + 1
    fits = (counts >= config.slices_min) & (counts <= config.slices_max)
    if fits.any():
        spacing = float(rng.choice(choices[fits]))
        n = round(length / spacing) + 1
    else:  # no spacing fits: take the closest and cut (or extend) the coverage to the budget
        miss = np.maximum(config.slices_min - counts, 0) + np.maximum(counts - config.slices_max, 0)
        pick = int(np.argmin(miss))
        spacing = float(choices[pick])
        n = int(np.clip(counts[pick], config.slices_min, config.slices_max))
        if n < counts[pick]:  # keep the middle of the trunk
            z_top = 0.5 * (z_top + z_bottom) + 0.5 * (n - 1) * spacing
            coverage = "slice_budget" if coverage == "full" else coverage
        # n > counts: the extra slices extend towards the feet
    z_top = round(float(z_top), 2)
    z_bottom = z_top - (n - 1) * spacing
    thickness = spacing
    if rng.random() < 0.25:  # overlapping reconstruction
        thickness = float(min(round(spacing * 1.25, 3), 3.0))
    position = config.position or ("FFS" if rng.random() < config.feet_first_probability else "HFS")
    widest = float(np.max(body.profile["a"]))
    low, high = config.fov_range_mm
    fov = float(np.clip(round(2 * widest * 1.06 + rng.uniform(10.0, 40.0)), low, high))
    kernel, blur, noise = KERNELS[int(rng.integers(len(KERNELS)))]
    noise *= np.sqrt(1.25 / thickness) * (1.0 + 0.4 * (spine.patient.fat_mm - 20.0) / 40.0)
    noise = float(np.clip(noise, 10.0, 30.0) * config.noise_scale)  # kernel- and size-dependent, 10-30 HU
    y_mid = float(np.mean(body.profile["y_back"] - body.profile["b"]))
    return Acquisition(
        position=position,
        matrix=config.matrix,
        fov_mm=fov,
        spacing_mm=spacing,
        thickness_mm=thickness,
        n_slices=n,
        z_top=z_top,
        z_bottom=float(z_bottom),
        center_xy=(round(rng.uniform(-12.0, 12.0), 1), round(y_mid + rng.uniform(-12.0, 12.0), 1)),
        kernel=kernel,
        blur_mm=blur,
        noise_hu=noise,
        kvp=int(rng.choice([100, 120, 120, 120, 140])),
        signed=bool(rng.random() < config.signed_pixels_probability),
        coverage=coverage,
    )
