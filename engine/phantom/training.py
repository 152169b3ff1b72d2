"""Segmentation targets for training: the phantom's anatomy as the model's classes.

The phantom's ``labels`` volume holds vertebral bodies only (what truth and Dice need). The
segmentation network also learns the two anchors that name levels and the gaps that split
bodies (see :mod:`engine.models.contract`): intervertebral discs, the sacrum and the rib
heads. They are painted here from the same plan the phantom was rendered from, on the
screening series' grid:

* body: every labelled body voxel (partial bodies included: a body cut by the field of
  view is still a body to segment);
* sacrum: the bodies of the sacral segments (S1..S5);
* disc: the voxels each disc painter touches, found by painting into a scratch canvas;
* rib head: a sphere of ``RIB_HEAD_RADIUS_MM`` around each costovertebral joint of a
  rib-bearing vertebra, outside the body.
"""

from __future__ import annotations

import numpy as np

from engine.models.contract import SEG_CLASSES
from engine.phantom.config import PhantomConfig, PlantedFracture
from engine.phantom.pathology import MORPHOLOGIES
from engine.phantom.study import generate_study
from engine.phantom.vertebra import paint_disc, paint_vertebra
from engine.volume import Volume

BACKGROUND, BODY, DISC, SACRUM, RIB_HEAD = (SEG_CLASSES.index(n) for n in (
    "background", "vertebral_body", "intervertebral_disc", "sacrum", "rib_head"))
RIB_HEAD_RADIUS_MM = 7.0
_SENTINEL = np.int16(-32768)


def _paint_sphere(classes: np.ndarray, inverse_affine: np.ndarray, centre_lps: np.ndarray,
                  spacing: np.ndarray, radius_mm: float, value: int, keep: np.ndarray) -> None:
    centre = inverse_affine[:3, :3] @ centre_lps + inverse_affine[:3, 3]
    reach = np.ceil(radius_mm / spacing).astype(int) + 1
    lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
    hi = np.minimum(np.ceil(centre).astype(int) + reach + 1, classes.shape)
    if np.any(hi <= lo):
        return
    grids = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    block = tuple(slice(a, b) for a, b in zip(lo, hi))
    inside = (dist2 <= radius_mm**2) & keep[block]
    classes[block][inside] = value


def class_map(study) -> np.ndarray:
    """The training class map (uint8, SEG_CLASSES indices) on the study's screening grid."""
    plan = study.plan
    grid = plan.acquisition.grid()
    shape = study.volume.hu.shape
    classes = np.zeros(shape, dtype=np.uint8)
    spine = plan.spine.vertebrae

    scratch = np.full(shape, _SENTINEL, dtype=np.int16)
    for disc in plan.spine.discs:
        paint_disc(scratch, grid, spine[disc.upper], spine[disc.lower], disc, seed=0)
    classes[scratch != _SENTINEL] = DISC

    # Bodies, sacral segments included, painted with their region's class; partial bodies too.
    # (the HU it paints into ``scratch`` is thrown away; only the labels are kept)
    body_labels = np.zeros(shape, dtype=np.uint8)
    for vertebra in spine:
        paint_vertebra(scratch, body_labels, grid, vertebra, SACRUM if vertebra.region == "S" else BODY, seed=0)
    classes[body_labels == BODY] = BODY
    classes[body_labels == SACRUM] = SACRUM

    affine = study.volume.affine
    inverse = np.linalg.inv(affine)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    outside_body = (classes != BODY) & (classes != SACRUM)
    for vertebra in spine:
        if not vertebra.ribs:
            continue
        h = vertebra.posterior
        for side in (-1.0, 1.0):
            head = vertebra.to_world(np.array([side * 0.8 * vertebra.half_width, 0.45 * vertebra.half_depth, 0.3 * h]))
            _paint_sphere(classes, inverse, head, spacing, RIB_HEAD_RADIUS_MM, RIB_HEAD, outside_body)
    return classes


UPPER_THORACIC = ("T1", "T2", "T3", "T4", "T5")
"""Levels where the clinical mix rarely puts a fracture (weights 0.3-1.2 of 4 at the
thoracolumbar junction): the classifier's extra examples go here."""


def upper_thoracic_fracture(seed: int, base: PhantomConfig) -> PhantomConfig:
    """``base`` with one fracture planted in the upper thoracic spine, for the classifier.

    The sampled mix puts about 6% of its fractures at T1-T4 (by its level weights), and there
    the crops differ most: small bodies, the kyphosis tilts them in the axial grid and the
    scan's first slice is near. The level, grade (1-3) and morphology are drawn uniformly
    from ``seed``, so a sample is the same on every run; the field of view always covers the
    whole trunk.
    """
    rng = np.random.default_rng([seed, 0x7415])
    fracture = PlantedFracture(
        level=str(rng.choice(UPPER_THORACIC)),
        morphology=str(rng.choice(MORPHOLOGIES)),  # type: ignore[arg-type]
        grade=int(rng.integers(1, 4)),
    )
    return base.model_copy(update={"fractures": (fracture,), "partial_coverage_probability": 0.0})


ADJACENT_LEVELS = ("T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3")
"""Upper levels of the adjacent pairs planted for the segmenter: the mid-thoracic spine and
the thoracolumbar junction, where osteoporotic fractures cluster."""


def adjacent_fractures(seed: int, base: PhantomConfig) -> PhantomConfig:
    """``base`` with two adjacent vertebrae fractured at grade 2 or 3, for the segmenter.

    Two crushed neighbours leave only a thin disc between them. The sampled mix rarely plants
    such a pair, and a segmenter that has not seen one runs the body class across that disc:
    one segment then holds both bodies, one fracture is lost and every name above it shifts.
    Level, grades and morphologies are drawn from ``seed``; the field of view covers the trunk.
    """
    rng = np.random.default_rng([seed, 0xAD1A])
    upper = int(rng.integers(len(ADJACENT_LEVELS)))
    levels = (ADJACENT_LEVELS[upper], _next_level(ADJACENT_LEVELS[upper]))
    fractures = tuple(
        PlantedFracture(level=level, morphology=str(rng.choice(MORPHOLOGIES)),  # type: ignore[arg-type]
                        grade=int(rng.integers(2, 4)))
        for level in levels
    )
    return base.model_copy(update={"fractures": fractures, "partial_coverage_probability": 0.0, "transitional": "none"})


def _next_level(level: str) -> str:
    """The level below ``level`` in a spine of 12 thoracic and 5 lumbar vertebrae."""
    region, number = level[0], int(level[1:])
    if region == "T":
        return "L1" if number == 12 else f"T{number + 1}"
    return f"L{number + 1}"


def training_example(seed: int, config: PhantomConfig) -> tuple[Volume, np.ndarray, dict]:
    """One phantom rendered in memory: its volume, training class map and truth."""
    study = generate_study(seed, config)
    return study.volume, class_map(study), study.truth
