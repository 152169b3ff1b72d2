"""Fractures, natural variation and spinal confounders: sampled, not drawn.

Everything here changes :class:`~engine.phantom.spine.Vertebra` parameters (heights,
densities, lesions) and returns the records that go into truth.json; the renderer then
paints whatever the parameters say. Grades are never written by hand: they are derived
from the heights with :func:`genant_grade`, the same rule the evaluation uses.
"""

from __future__ import annotations

import numpy as np

from engine.phantom.config import PhantomConfig, PlantedFracture
from engine.phantom.spine import Lesion, Vertebra

GRADE_LOSS_RANGES = {1: (0.205, 0.245), 2: (0.27, 0.385), 3: (0.42, 0.58)}
"""Height loss drawn for each Genant grade, inside the grade's interval with a margin
(grade 1 = 20-25 %, grade 2 = 25-40 %, grade 3 > 40 %, sampled up to 60 %)."""
NATURAL_LOSS_MAX = 0.10
"""Normal vertebrae deform less than this (physiological wedging, endplate concavity)."""
MORPHOLOGIES = ("wedge", "biconcave", "crush")
FRACTURE_LEVEL_WEIGHTS = {
    "T11": 4.0, "T12": 4.0, "T13": 4.0, "L1": 4.0, "L2": 4.0,
    "T7": 2.5, "T8": 2.5,
    "T5": 1.2, "T6": 1.2, "T9": 1.2, "T10": 1.2, "L3": 1.2, "L4": 1.2,
    "T3": 0.6, "T4": 0.6, "L5": 0.5, "L6": 0.5, "T1": 0.3, "T2": 0.3,
}
"""Relative frequency of fractures by level: thoracolumbar junction and mid-thoracic spine."""


def genant_grade(height_loss: float) -> int:
    """Genant semi-quantitative grade of a height loss (share of the expected height)."""
    if height_loss >= 0.40:
        return 3
    if height_loss >= 0.25:
        return 2
    if height_loss >= 0.20:
        return 1
    return 0


def natural_shape(rng: np.random.Generator, vertebra: Vertebra) -> None:
    """Normal (grade 0) body: slight physiological wedging and endplate concavity, < 10 %."""
    h0 = vertebra.h0
    if vertebra.region == "T":
        wedge = rng.uniform(0.0, 0.07)
    elif vertebra.region == "L":
        wedge = rng.uniform(-0.06, 0.03)
    else:
        wedge = rng.uniform(-0.03, 0.03)
    posterior = h0 * (1.0 - rng.uniform(0.0, 0.02))
    anterior = h0 * (1.0 - wedge)
    middle = 0.5 * (anterior + posterior) - rng.uniform(0.01, 0.04) * h0
    vertebra.anterior, vertebra.middle, vertebra.posterior = anterior, middle, posterior
    vertebra.sup_share = rng.uniform(0.4, 0.6)
    vertebra.concavity = rng.uniform(0.5, 2.0) * vertebra.half_depth / 15.0
    vertebra.waist = rng.uniform(0.03, 0.08)
    if vertebra.height_loss() >= NATURAL_LOSS_MAX:  # cannot happen with the ranges above
        raise ValueError(f"natural shape of {vertebra.level} deforms {vertebra.height_loss():.3f}")


def plant_fracture(
    rng: np.random.Generator, vertebra: Vertebra, morphology: str, grade: int, loss: float | None = None
) -> float:
    """Deform a body to a Genant grade (height loss drawn, or ``loss``); returns the loss."""
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"unknown fracture morphology {morphology!r}; expected one of {MORPHOLOGIES}")
    if grade not in GRADE_LOSS_RANGES:
        raise ValueError(f"fracture grade must be 1, 2 or 3; got {grade}")
    drawn = float(rng.uniform(*GRADE_LOSS_RANGES[grade]))
    loss = drawn if loss is None else float(loss)
    h0 = vertebra.h0
    if morphology == "wedge":
        anterior = h0 * (1.0 - loss)
        posterior = h0 * (1.0 - rng.uniform(0.0, 0.03))
        middle = 0.5 * (anterior + posterior) - rng.uniform(0.01, 0.03) * h0
        vertebra.sup_share = rng.uniform(0.65, 0.9)
    elif morphology == "biconcave":
        middle = h0 * (1.0 - loss)
        anterior = h0 * (1.0 - rng.uniform(0.0, 0.05))
        posterior = h0 * (1.0 - rng.uniform(0.0, 0.03))
        vertebra.sup_share = rng.uniform(0.4, 0.6)
    else:  # crush: every height lost, only the neighbours reveal it
        base = h0 * (1.0 - loss)
        anterior = base * (1.0 + rng.uniform(0.0, 0.04))
        posterior = base * (1.0 + rng.uniform(0.0, 0.03))
        middle = 0.5 * (anterior + posterior) - rng.uniform(0.005, 0.02) * h0
        vertebra.sup_share = rng.uniform(0.45, 0.7)
    heights = np.array([anterior, middle, posterior])
    heights *= h0 * (1.0 - loss) / heights.min()  # the smallest height carries the loss exactly
    vertebra.anterior, vertebra.middle, vertebra.posterior = (float(h) for h in heights)
    vertebra.morphology, vertebra.grade = morphology, grade
    vertebra.compaction_hu = rng.uniform(20.0, 70.0)
    measured = vertebra.height_loss()
    if genant_grade(measured) != grade:  # the shape model and the grade rule must agree
        raise ValueError(f"{vertebra.level}: planted grade {grade} but the body loses {measured:.3f}")
    return measured


def choose_fractures(
    rng: np.random.Generator, config: PhantomConfig, vertebrae: list[Vertebra]
) -> list[PlantedFracture]:
    """The fractures of a fracture study: the config's planted list, or one to
    ``max_fractures`` sampled levels (the caller has decided the study has fractures)."""
    if config.fractures:
        known = {v.level for v in vertebrae}
        missing = [f.level for f in config.fractures if f.level not in known]
        if missing:
            raise ValueError(f"planted fracture levels {missing} do not exist in this spine ({sorted(known)})")
        return list(config.fractures)
    candidates = [v.level for v in vertebrae if v.level in FRACTURE_LEVEL_WEIGHTS]
    weights = np.array([FRACTURE_LEVEL_WEIGHTS[level] for level in candidates])
    counts = np.arange(1, config.max_fractures + 1)
    count = int(rng.choice(counts, p=0.5 ** (counts - 1) / np.sum(0.5 ** (counts - 1))))
    levels = rng.choice(candidates, size=min(count, len(candidates)), replace=False, p=weights / weights.sum())
    grade_p = np.array(config.grade_weights) / sum(config.grade_weights)
    morph_p = np.array(config.morphology_weights) / sum(config.morphology_weights)
    return [
        PlantedFracture(
            level=str(level),
            morphology=str(rng.choice(MORPHOLOGIES, p=morph_p)),  # type: ignore[arg-type]
            grade=int(rng.choice([1, 2, 3], p=grade_p)),
        )
        for level in levels
    ]


def bone_density(rng: np.random.Generator, osteoporotic: bool) -> tuple[str, float, float, float]:
    """(class, cancellous HU, cortical HU, cortex mm) of one patient."""
    if osteoporotic:
        return "osteoporotic", rng.uniform(35.0, 95.0), rng.uniform(420.0, 600.0), rng.uniform(0.7, 1.0)
    if rng.random() < 0.35:
        return "osteopenic", rng.uniform(105.0, 150.0), rng.uniform(550.0, 700.0), rng.uniform(0.9, 1.2)
    return "normal", rng.uniform(160.0, 250.0), rng.uniform(650.0, 900.0), rng.uniform(1.1, 1.6)


def _pick_levels(
    rng: np.random.Generator, vertebrae: list[Vertebra], regions: str, count: int, avoid: set[str]
) -> list[Vertebra]:
    pool = [v for v in vertebrae if v.region in regions and v.level not in avoid and v.labelled]
    if not pool:
        return []
    chosen = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    return [pool[i] for i in sorted(chosen)]


def plant_metastases(
    rng: np.random.Generator, vertebrae: list[Vertebra], kind: str, avoid: set[str]
) -> dict:
    """Sclerotic (dense) or lytic (low-density) blobs in one to three bodies."""
    targets = _pick_levels(rng, vertebrae, "TL", int(rng.integers(1, 4)), avoid)
    for vertebra in targets:
        for _ in range(int(rng.integers(1, 4))):
            size = min(vertebra.half_width, vertebra.half_depth, 0.5 * vertebra.h0)
            center = (
                rng.uniform(-0.5, 0.5) * vertebra.half_width,
                rng.uniform(-0.5, 0.5) * vertebra.half_depth,
                rng.uniform(-0.25, 0.25) * vertebra.h0,
            )
            radius = rng.uniform(0.3, 0.7) * size
            value = rng.uniform(750.0, 1300.0) if kind == "sclerotic" else rng.uniform(5.0, 45.0)
            vertebra.lesions.append(Lesion(kind=kind, center=center, radius=radius, value_hu=value))
    return {
        "type": f"{kind}_metastasis",
        "levels": [v.level for v in targets],
    }


def plant_schmorl_nodes(rng: np.random.Generator, vertebrae: list[Vertebra], avoid: set[str]) -> dict:
    """Endplate notches filled with disc material, off the mid-sagittal plane (grade stays 0)."""
    targets = _pick_levels(rng, vertebrae, "TL", int(rng.integers(1, 4)), avoid)
    for vertebra in targets:
        side = rng.choice([-1.0, 1.0])
        vertebra.lesions.append(Lesion(
            kind="schmorl",
            center=(side * rng.uniform(0.3, 0.55) * vertebra.half_width,
                    rng.uniform(-0.4, 0.4) * vertebra.half_depth, 0.0),
            radius=rng.uniform(3.0, 6.0),
            value_hu=rng.uniform(70.0, 110.0),
            extra={"endplate": str(rng.choice(["superior", "inferior"])), "depth": rng.uniform(2.5, 5.0)},
        ))
    return {"type": "schmorl_node", "levels": [v.level for v in targets]}


def plant_screws(rng: np.random.Generator, vertebrae: list[Vertebra]) -> list[Vertebra]:
    """Pedicle screws in two or three adjacent thoracolumbar vertebrae (rods drawn by metal)."""
    pool = [i for i, v in enumerate(vertebrae) if v.region in "TL" and v.level not in ("T1", "T2", "T3")]
    count = int(rng.integers(2, 4))
    start = int(rng.integers(0, max(len(pool) - count, 1)))
    chosen = [vertebrae[i] for i in pool[start : start + count]]
    for vertebra in chosen:
        for side in (-1.0, 1.0):
            vertebra.lesions.append(Lesion(kind="screw", center=(side, 0.0, 0.0), radius=rng.uniform(2.8, 3.4)))
    return chosen
