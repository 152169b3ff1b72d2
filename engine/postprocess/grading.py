"""Height loss and Genant semi-quantitative grade of each vertebra of a spine.

Height loss = 1 - smallest height / expected height. Where the expected height comes from:

- **Own posterior wall** (wedge, biconcave): a wedge loses its anterior height, a biconcave
  body its middle height, and the posterior wall keeps the intact height. This is the
  default, because it needs nothing but the vertebra itself and is immune to the natural
  variation between levels.
- **Neighbours** (crush): a crushed body loses all three heights, so its own ratios look
  normal and only the neighbours reveal it. The neighbours' posterior heights (up to two
  above and two below, within three levels, skipping those that are themselves deformed)
  are brought to the vertebra's level and interpolated: bodies grow caudally (about 4% per
  level in the thoracic spine, 2% in the lumbar spine), so a plain median of the neighbours
  would read a normal vertebra as shorter than those below it. With neighbours on both
  sides a straight line (in log height, by level) through them is evaluated at the
  vertebra, which cancels the growth whatever its actual rate; with neighbours on one side
  only the typical growth per level carries their median to the vertebra.
- The neighbours take over only when the vertebra's **posterior** height itself is short of
  the interpolation by ``neighbour_reference_loss`` (15%) or more; then the loss is measured
  against the interpolation, which is also the larger of the two losses. A normal vertebra
  keeps its own posterior reference, so taller neighbours can never make it "fractured".
- Deformed neighbours are found in rounds: a body with an own-ratio loss of grade 1 or more
  is never a reference; a body found crushed in one round stops being a reference in the
  next, until nothing changes (two adjacent crushes are handled this way). With three or
  more references, one that disagrees with their median by more than 30% (a mask merged with
  its neighbour, a missed crush) is dropped as well.

Edge vertebrae (first or last of the field of view, or next to a gap in the labels) have
neighbours on one side only: their expected height is the one-sided median carried by the
typical growth, and the finding notes it. A vertebra with no usable neighbour within three
levels is graded on its own ratios only, and the note says a crush cannot be seen.
C1, C2 (no ordinary body) and S1 (the sacrum) are neither graded nor used as references.

Morphology: ``crush`` when the neighbours set the reference and the body's own ratios are
normal (uniform collapse); otherwise ``wedge`` if the anterior height is the smallest,
``biconcave`` if the middle is; ``none`` for grade 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median
from typing import Protocol

import numpy as np

from engine.results import LEVELS, level_index
from engine.settings import GradingSettings

NOT_GRADED = frozenset({"C1", "C2", "S1"})
"""Levels without an ordinary vertebral body to grade."""

_GROWTH_PER_LEVEL = {"C": 0.0, "T": 0.04, "L": 0.02, "S": 0.0}
"""Typical caudal growth of the body height per level, by the region of the lower level
(from ~14 mm at T1 to ~27 mm at L4-L5). Used only to carry one-sided neighbours."""
_VARIANT_LEVELS = ("T13", "L6")
_MAX_NEIGHBOURS_PER_SIDE = 2
_MAX_LEVEL_GAP = 3
_OUTLIER_RATIO = math.log(1.3)
_MAX_ROUNDS = 5


class HasHeights(Protocol):
    anterior_mm: float
    middle_mm: float
    posterior_mm: float


@dataclass(frozen=True)
class Heights:
    """Anterior, middle and posterior body heights in millimetres."""

    anterior_mm: float
    middle_mm: float
    posterior_mm: float


@dataclass(frozen=True)
class Deformity:
    """The morphometric verdict on one vertebra."""

    level: str
    height_loss: float
    grade: int
    morphology: str
    """wedge, biconcave, crush or none."""
    expected_mm: float | None
    reference: str
    """own_posterior, neighbours or not_graded."""
    own_loss: float
    """1 - min(anterior, middle, posterior) / posterior."""
    posterior_loss_vs_neighbours: float | None
    """1 - posterior / neighbours' interpolation; None without a usable neighbour."""
    notes: tuple[str, ...] = ()


def genant_grade(height_loss: float, settings: GradingSettings) -> int:
    """0..3 from the height loss and the thresholds of ``settings`` (each bound inclusive)."""
    if not math.isfinite(height_loss):
        raise ValueError(f"height loss {height_loss} is not a number")
    if height_loss >= settings.grade3_height_loss:
        return 3
    if height_loss >= settings.grade2_height_loss:
        return 2
    if height_loss >= settings.grade1_height_loss:
        return 1
    return 0


def own_height_loss(heights: HasHeights) -> float:
    """Loss against the body's own posterior wall: 1 - min(a, m, p) / p, within [0, 1]."""
    smallest = min(heights.anterior_mm, heights.middle_mm, heights.posterior_mm)
    return float(min(max(1.0 - smallest / heights.posterior_mm, 0.0), 1.0))


def grade_spine(heights: Mapping[str, HasHeights], settings: GradingSettings) -> dict[str, Deformity]:
    """Grade every measured vertebra of one spine; keys are levels (any order)."""
    for level, h in heights.items():
        level_index(level)
        values = (h.anterior_mm, h.middle_mm, h.posterior_mm)
        if not all(math.isfinite(v) and v >= 0 for v in values) or h.posterior_mm <= 0:
            raise ValueError(
                f"{level}: heights (anterior, middle, posterior) {values} mm must be finite, "
                "non-negative, with a positive posterior height"
            )
    position = _positions(heights.keys())
    graded = [level for level in heights if level not in NOT_GRADED]
    own = {level: own_height_loss(heights[level]) for level in graded}
    deformed = {level for level in graded if own[level] >= settings.grade1_height_loss}

    crushed: set[str] = set()
    for _ in range(_MAX_ROUNDS):
        references = [lv for lv in graded if lv not in deformed and lv not in crushed]
        found = set()
        for level in graded:
            estimate = _neighbour_estimate(level, references, heights, position)
            if estimate is not None:
                loss = 1.0 - heights[level].posterior_mm / estimate[0]
                if loss >= settings.neighbour_reference_loss:
                    found.add(level)
        if found == crushed:
            break
        crushed = found

    references = [lv for lv in graded if lv not in deformed and lv not in crushed]
    result: dict[str, Deformity] = {}
    for level in sorted(heights, key=level_index):
        if level in NOT_GRADED:
            result[level] = Deformity(
                level, 0.0, 0, "none", None, "not_graded", 0.0, None,
                (f"{level} is not graded: no ordinary vertebral body",),
            )
            continue
        result[level] = _grade_one(
            level, heights[level], own[level], level in crushed,
            _neighbour_estimate(level, references, heights, position), settings,
        )
    return result


def _grade_one(
    level: str,
    h: HasHeights,
    own_loss: float,
    crushed: bool,
    estimate: tuple[float, bool] | None,
    settings: GradingSettings,
) -> Deformity:
    notes: list[str] = []
    if estimate is None:
        notes.append("no undeformed neighbour within 3 levels: a crush cannot be detected")
        posterior_loss = None
    else:
        expected_nb, one_sided = estimate
        posterior_loss = 1.0 - h.posterior_mm / expected_nb
        if one_sided:
            notes.append("neighbours on one side only: expected height carried by typical growth")
    smallest = min(h.anterior_mm, h.middle_mm, h.posterior_mm)
    if crushed and estimate is not None:
        expected, reference = estimate[0], "neighbours"
        loss = float(min(max(1.0 - smallest / expected, 0.0), 1.0))
    else:
        expected, reference, loss = h.posterior_mm, "own_posterior", own_loss
    grade = genant_grade(loss, settings)
    if grade == 0:
        morphology = "none"
    elif reference == "neighbours" and own_loss < settings.grade1_height_loss:
        morphology = "crush"
    elif h.anterior_mm <= h.middle_mm:
        morphology = "wedge"
    else:
        morphology = "biconcave"
    return Deformity(
        level=level,
        height_loss=loss,
        grade=grade,
        morphology=morphology,
        expected_mm=float(expected),
        reference=reference,
        own_loss=own_loss,
        posterior_loss_vs_neighbours=None if posterior_loss is None else float(posterior_loss),
        notes=tuple(notes),
    )


def _positions(levels) -> dict[str, float]:
    """Anatomical position of each level: its index, without the variant slots (T13, L6)
    this spine does not have, so that T12 and L1 are one step apart in a usual spine."""
    present = set(levels)
    absent = [level_index(v) for v in _VARIANT_LEVELS if v not in present]
    return {
        level: float(level_index(level) - sum(1 for slot in absent if slot < level_index(level)))
        for level in present
    }


def _growth_log(level_from: str, level_to: str) -> float:
    """Log of the typical height ratio from ``level_from`` to ``level_to`` (either order)."""
    a, b = sorted((level_index(level_from), level_index(level_to)))
    total = sum(math.log1p(_GROWTH_PER_LEVEL[LEVELS[k][0]]) for k in range(a + 1, b + 1))
    return total if level_index(level_to) >= level_index(level_from) else -total


def _neighbour_estimate(
    level: str,
    references: list[str],
    heights: Mapping[str, HasHeights],
    position: Mapping[str, float],
) -> tuple[float, bool] | None:
    """(expected posterior height at ``level`` from its neighbours, one-sided?) or None."""
    here = position[level]
    above = sorted(
        (r for r in references if r != level and 0 < here - position[r] <= _MAX_LEVEL_GAP),
        key=lambda r: here - position[r],
    )[:_MAX_NEIGHBOURS_PER_SIDE]
    below = sorted(
        (r for r in references if r != level and 0 < position[r] - here <= _MAX_LEVEL_GAP),
        key=lambda r: position[r] - here,
    )[:_MAX_NEIGHBOURS_PER_SIDE]
    chosen = above + below
    if not chosen:
        return None
    # Residual of each neighbour once the typical growth to this level is taken out.
    residual = {r: math.log(heights[r].posterior_mm) + _growth_log(r, level) for r in chosen}
    if len(chosen) >= 3:
        centre = median(residual.values())
        kept = [r for r in chosen if abs(residual[r] - centre) <= _OUTLIER_RATIO]
        above = [r for r in above if r in kept]
        below = [r for r in below if r in kept]
        chosen = above + below
        if not chosen:
            return None
    if above and below:
        # A straight line through the neighbours' residuals, read at this level: it
        # follows whatever growth rate this spine has, not only the typical one.
        x = np.array([position[r] - here for r in chosen])
        y = np.array([residual[r] for r in chosen])
        _, intercept = np.polyfit(x, y, 1) if len(set(x)) > 1 else (0.0, float(y.mean()))
        return float(math.exp(intercept)), False
    return float(math.exp(median(residual[r] for r in chosen))), True
