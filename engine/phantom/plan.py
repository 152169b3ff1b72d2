"""Drawing one study: patient, spine, pathology and confounders, before any voxel exists.

:func:`sample_spine_plan` turns a seed and a :class:`PhantomConfig` into a
:class:`SpinePlan`: the vertebrae with their final heights, densities and lesions, the
discs, the curved centerline with every vertebra placed on it, and the confounder
records for truth.json. All randomness flows from one ``numpy`` generator in a fixed
order, so a seed always gives the same study.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.phantom.config import PhantomConfig
from engine.phantom.pathology import (
    bone_density,
    choose_fractures,
    natural_shape,
    plant_fracture,
    plant_metastases,
    plant_schmorl_nodes,
    plant_screws,
)
from engine.phantom.spine import (
    Centerline,
    Vertebra,
    frame_from,
    integrate_centerline,
    level_names,
    nominal_vertebra,
)
from engine.phantom.vertebra import Disc

TRANSITIONAL_VARIANTS = ("13_thoracic", "11_thoracic", "6_lumbar", "sacralised_L5")


@dataclass
class Patient:
    """Synthetic patient attributes (never real data) and body habitus."""

    number: int
    sex: str
    age: int
    scale: float  # skeletal size factor
    width: float  # torso width factor
    fat_mm: float  # subcutaneous fat thickness at the abdomen
    bone_class: str
    osteoporotic: bool

    @property
    def name(self) -> str:
        return f"PHANTOM^{self.number:06d}"

    @property
    def patient_id(self) -> str:
        return f"PH{self.number:06d}"


@dataclass
class SpinePlan:
    patient: Patient
    vertebrae: list[Vertebra]
    discs: list[Disc]
    centerline: Centerline
    variant: str | None
    confounders: list[dict] = field(default_factory=list)
    metal: dict | None = None
    curve: dict = field(default_factory=dict)

    def index_of(self, level: str) -> int:
        for i, vertebra in enumerate(self.vertebrae):
            if vertebra.level == level:
                return i
        raise KeyError(f"level {level} is not in this spine")

    def vertebra(self, level: str) -> Vertebra:
        return self.vertebrae[self.index_of(level)]


def sample_patient(rng: np.random.Generator, seed: int, osteoporotic: bool) -> Patient:
    sex = "F" if rng.random() < 0.5 else "M"
    bone_class = "osteoporotic" if osteoporotic else "not osteoporotic"
    age = int(rng.integers(66, 92) if osteoporotic else rng.integers(35, 85))
    scale = float(np.clip(rng.normal(0.95 if sex == "F" else 1.03, 0.05), 0.85, 1.15))
    return Patient(
        number=seed % 1_000_000,
        sex=sex,
        age=age,
        scale=scale,
        width=float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.2)),
        fat_mm=float(rng.uniform(6.0, 45.0)),
        bone_class=bone_class,
        osteoporotic=osteoporotic,
    )


def _variant(rng: np.random.Generator, config: PhantomConfig) -> str | None:
    if config.transitional is not None:
        return None if config.transitional == "none" else config.transitional
    if rng.random() < config.transitional_probability:
        return str(rng.choice(TRANSITIONAL_VARIANTS))
    return None


def _build_column(rng: np.random.Generator, patient: Patient, variant: str | None) -> list[Vertebra]:
    n_thoracic = {"13_thoracic": 13, "11_thoracic": 11}.get(variant or "", 12)
    n_lumbar = 6 if variant == "6_lumbar" else 5
    column = []
    for level, region, fraction in level_names(n_thoracic, n_lumbar):
        vertebra = nominal_vertebra(level, region, fraction, patient.scale * rng.normal(1.0, 0.025))
        vertebra.ribs = region == "T"
        vertebra.labelled = region != "S" or level == "S1"
        column.append(vertebra)
    if variant == "sacralised_L5":
        l5 = next(v for v in column if v.level == "L5")
        l5.sacralised = True
        l5.transverse_length, l5.transverse_radius, l5.transverse_back_deg = 30.0 * patient.scale, 10.0, 12.0
    return column


def _densities(rng: np.random.Generator, patient: Patient, column: list[Vertebra]) -> str:
    bone_class, cancellous, cortical, cortex = bone_density(rng, patient.osteoporotic)
    offsets = {"C": 35.0, "T": 10.0, "L": 0.0, "S": -15.0}
    for vertebra in column:
        vertebra.cancellous_hu = float(max(cancellous + offsets[vertebra.region] + rng.normal(0, 7), 15.0))
        vertebra.cortical_hu = float(cortical + rng.normal(0, 30))
        vertebra.cortex_mm = float(cortex)
    return bone_class


def _discs(rng: np.random.Generator, column: list[Vertebra], scale: float) -> list[Disc]:
    """Disc heights: ~4 mm (upper thoracic) to ~10 mm (lower lumbar); fused in the sacrum."""
    discs = []
    for i in range(len(column) - 1):
        upper, lower = column[i], column[i + 1]
        if upper.region == "S":
            height, kind = 1.5, "fused"
        elif lower.region == "S":
            height, kind = (rng.uniform(3.0, 5.0), "fused") if upper.sacralised else (rng.uniform(8.5, 10.5), "normal")
        elif upper.region == "C":
            height, kind = rng.uniform(4.5, 5.5), "normal"
        elif upper.region == "T":
            thoracic = [v for v in column if v.region == "T"]
            f = thoracic.index(upper) / max(len(thoracic) - 1, 1)
            height, kind = 4.0 + 2.5 * f + rng.normal(0, 0.3), "normal"
        else:
            lumbar = [v for v in column if v.region == "L"]
            f = lumbar.index(upper) / max(len(lumbar) - 1, 1)
            height, kind = 7.5 + 2.5 * f + rng.normal(0, 0.4), "normal"
        factor = scale if kind == "normal" else 1.0
        discs.append(Disc(upper=i, lower=i + 1, height=float(height) * factor, kind=kind))
    return discs


def _degenerate(rng: np.random.Generator, column: list[Vertebra], discs: list[Disc]) -> dict | None:
    candidates = [d for d in discs if d.kind == "normal" and column[d.upper].region in "TL"
                  and column[d.lower].region in "TLS"]
    weights = np.array([4.0 if column[d.upper].region == "L" else 1.0 for d in candidates])
    chosen = rng.choice(len(candidates), size=int(rng.integers(1, 4)), replace=False, p=weights / weights.sum())
    names, levels = [], []
    for k in sorted(chosen):
        disc = candidates[k]
        disc.kind, disc.height = "degenerated", disc.height * rng.uniform(0.45, 0.7)
        disc.vacuum = bool(rng.random() < 0.6)
        for idx, endplate in ((disc.upper, "inferior"), (disc.lower, "superior")):
            column[idx].endplate_sclerosis = True
            column[idx].osteophytes = bool(rng.random() < 0.7)
            levels.append(column[idx].level)
        names.append(disc.name(column))
    return {"type": "degenerative", "discs": names, "levels": sorted(set(levels), key=levels.index)}


def _theta_anchors(rng: np.random.Generator, column: list[Vertebra], s_of: dict[str, float], osteoporotic: bool):
    """Sagittal tilt (degrees, + = anterior) at each vertebra: sacrum, lordosis, kyphosis.

    Angles are those of a standing spine; the caller rotates the whole column so that it
    lies balanced on the table (supine), which keeps the relative curvature.
    """
    sacral_slope = float(np.clip(rng.normal(38.0, 6.0), 25.0, 52.0))
    top_lumbar = float(np.clip(rng.normal(-15.0, 6.0), -30.0, -3.0))
    lordosis = sacral_slope - top_lumbar
    kyphosis = float(np.clip(rng.normal(46.0 if osteoporotic else 36.0, 9.0), 20.0, 70.0))
    lumbar = [v for v in column if v.region == "L"]
    thoracic = [v for v in column if v.region == "T"]
    theta: dict[str, float] = {}
    for vertebra in column:
        if vertebra.region == "S":
            theta[vertebra.level] = sacral_slope + 10.0 * (int(vertebra.level[1:]) - 1)
    for k, vertebra in enumerate(reversed(lumbar)):
        p = k / max(len(lumbar) - 1, 1)
        theta[vertebra.level] = sacral_slope - lordosis * (0.3 + 0.7 * p)
    for k, vertebra in enumerate(reversed(thoracic)):
        p = k / max(len(thoracic) - 1, 1)
        theta[vertebra.level] = top_lumbar - 2.0 + (kyphosis + 4.0) * p
    top_thoracic = theta[thoracic[0].level]
    for vertebra in column:
        if vertebra.region == "C":
            theta[vertebra.level] = top_thoracic - 6.0 - 22.0 * (7 - int(vertebra.level[1:])) / 3.0
    s = np.array([s_of[v.level] for v in column])[::-1]
    values = np.array([theta[v.level] for v in column])[::-1]
    return s, values, {"sacral_slope_deg": round(sacral_slope, 1), "lordosis_deg": round(lordosis, 1),
                       "kyphosis_deg": round(kyphosis, 1)}


def _arc_positions(column: list[Vertebra], discs: list[Disc]) -> dict[str, float]:
    """Arc length of each body centre above S1's centre along the axis."""
    s1 = next(i for i, v in enumerate(column) if v.level == "S1")
    s = {column[s1].level: 0.0}
    for i in range(s1 - 1, -1, -1):
        below_top = column[i + 1].axial_extent()[1]
        s[column[i].level] = s[column[i + 1].level] + below_top + discs[i].height - column[i].axial_extent()[0]
    for i in range(s1 + 1, len(column)):
        above_bot = column[i - 1].axial_extent()[0]
        s[column[i].level] = s[column[i - 1].level] + above_bot - discs[i - 1].height - column[i].axial_extent()[1]
    return s


def _scoliosis(rng: np.random.Generator, column: list[Vertebra], s_of: dict[str, float], forced: bool):
    """Lateral offset and axial rotation functions; a record when a curve is planted."""
    wobble_amp, wobble_len, wobble_phase = rng.uniform(0.5, 3.0), rng.uniform(250, 500), rng.uniform(0, 2 * np.pi)

    def natural(s: np.ndarray) -> np.ndarray:
        return wobble_amp * np.sin(2 * np.pi * s / wobble_len + wobble_phase)

    if not forced:
        return natural, (lambda s: np.zeros_like(s)), None
    cobb = float(rng.uniform(10.0, 40.0))
    names = [v.level for v in column if v.region in "TL"]
    apex_index = int(rng.integers(names.index("T7"), len(names) - 2))
    half_span = int(rng.integers(3, 6))
    top = names[max(apex_index - half_span, 0)]
    bottom = names[min(apex_index + half_span, len(names) - 1)]
    s_a, s_b = s_of[bottom], s_of[top]
    length = s_b - s_a
    amplitude = length * np.tan(np.deg2rad(cobb / 2)) / np.pi
    side = float(rng.choice([-1.0, 1.0]))  # + : convex to the patient's left

    def bump(s: np.ndarray) -> np.ndarray:
        inside = (s >= s_a) & (s <= s_b)
        return np.where(inside, np.sin(np.pi * (s - s_a) / length), 0.0)

    rotation_max = 0.6 * cobb
    record = {"type": "scoliosis", "cobb_deg": round(cobb, 1), "apex_level": names[apex_index],
              "convexity": "left" if side > 0 else "right", "levels": names[names.index(top): names.index(bottom) + 1]}
    return (lambda s: natural(s) + side * amplitude * bump(s)), (lambda s: side * rotation_max * bump(s)), record


def sample_spine_plan(rng: np.random.Generator, seed: int, config: PhantomConfig) -> SpinePlan:
    """Patient, column, pathology, confounders and the placed centerline of one study."""
    variant = _variant(rng, config)
    wants_fracture = bool(config.fractures) or rng.random() < config.fracture_study_probability
    osteoporotic = wants_fracture or rng.random() < config.osteoporosis_without_fracture_probability
    patient = sample_patient(rng, seed, osteoporotic)
    column = _build_column(rng, patient, variant)
    patient.bone_class = _densities(rng, patient, column)
    for vertebra in column:
        natural_shape(rng, vertebra)
    confounders: list[dict] = []
    if variant is not None:
        affected = {"13_thoracic": ["T13"], "11_thoracic": ["T11"], "6_lumbar": ["L6"], "sacralised_L5": ["L5"]}
        confounders.append({"type": "transitional", "variant": variant, "levels": affected[variant],
                            "thoracic_count": sum(v.region == "T" for v in column),
                            "lumbar_count": sum(v.region == "L" for v in column)})
    fractures = choose_fractures(rng, config, column) if wants_fracture else []
    by_level = {v.level: v for v in column}
    for planted in fractures:
        plant_fracture(rng, by_level[planted.level], planted.morphology, planted.grade, planted.height_loss)
    fractured = {f.level for f in fractures}
    if rng.random() < config.sclerotic_metastasis_probability:
        confounders.append(plant_metastases(rng, column, "sclerotic", fractured))
    if rng.random() < config.lytic_metastasis_probability:
        confounders.append(plant_metastases(rng, column, "lytic", fractured))
    if rng.random() < config.schmorl_probability:
        confounders.append(plant_schmorl_nodes(rng, column, fractured))
    discs = _discs(rng, column, patient.scale)
    if rng.random() < config.degenerative_probability:
        record = _degenerate(rng, column, discs)
        if record:
            confounders.append(record)
    metal = None
    if rng.random() < config.metal_probability:
        if rng.random() < 0.5:
            side = str(rng.choice(["left", "right"]))
            metal = {"type": "metal", "device": "hip_prosthesis", "side": side, "levels": []}
        else:
            screwed = plant_screws(rng, column)
            metal = {"type": "metal", "device": "pedicle_screws", "levels": [v.level for v in screwed]}
        confounders.append(metal)

    s_of = _arc_positions(column, discs)
    s_anchor, theta, curve_record = _theta_anchors(rng, column, s_of, patient.osteoporotic)
    for vertebra in column:  # a wedge tilts the column above it forward
        if vertebra.morphology == "wedge":
            v_a, _, v_p = vertebra.measure_positions()
            step = 0.7 * np.rad2deg(np.arctan((vertebra.posterior - vertebra.anterior) / (v_p - v_a)))
            theta = theta + step * (s_anchor > s_of[vertebra.level])
    lateral, rotation, scoliosis = _scoliosis(rng, column, s_of, rng.random() < config.scoliosis_probability)
    if scoliosis:
        confounders.append(scoliosis)
    origin = np.array([0.0, rng.uniform(40.0, 90.0), rng.uniform(-650.0, -450.0)])
    centerline = integrate_centerline(
        s_anchor, theta, lateral, rotation,
        s_min=min(s_of.values()) - 30.0, s_max=max(s_of.values()) + 60.0, origin=origin,
    )
    t1 = next(v.level for v in column if v.region == "T")
    centerline = centerline.balanced(s_of[t1], 0.0, lean_mm=rng.uniform(-25.0, 10.0))
    for vertebra in column:
        point, tangent, rotation_deg = centerline.at(s_of[vertebra.level])
        vertebra.center, vertebra.frame = point, frame_from(tangent, rotation_deg)
    return SpinePlan(patient=patient, vertebrae=column, discs=discs, centerline=centerline,
                     variant=variant, confounders=confounders, metal=metal, curve=curve_record)
