"""Vertebral level labelling from the segmentation's class map.

Input: a class map on the canonical model grid (axis0 to Superior, axis1 to Posterior,
axis2 to Left; classes of :data:`engine.models.contract.SEG_CLASSES`: background, vertebral
body, intervertebral disc, sacrum, rib head). Output: one :class:`LabelledVertebra` per
vertebral body, named C1..C7, T1..T13, L1..L6 or S1.

How levels are named, and why: the network finds bodies but does not name them (per-level
classes fail by whole-level shifts). Names come from counting between two independent
anchors that a TAP CT nearly always holds:

* the **ribs**: a body with a rib head beside it is thoracic. If a rib-free body lies above
  the first rib-bearing one (the cervical spine is in the field of view), the first
  rib-bearing body is T1 and thoracic levels are counted down from it, so 11 or 13 rib pairs
  give T11 or T13 as the last thoracic. Otherwise the last rib-bearing body is T12 and levels
  are counted up from it (with 13 rib pairs and the cervical spine out of view this is off by
  one; no image-only method can tell, and the result's notes say which anchor was used).
* the **sacrum**: the rib-free bodies between the last rib-bearing body and the sacrum are
  lumbar, L1 downwards, however many there are (six lumbar vertebrae give L6). Without any
  rib-bearing body, the body above the sacrum is L5 and levels are counted up from it.
  S1 is the top segment of the sacrum.

Plain functions on numpy arrays; the only dependency is scipy.ndimage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

BACKGROUND, BODY, DISC, SACRUM, RIB_HEAD = 0, 1, 2, 3, 4
KNOWN_LEVELS = frozenset(
    [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 14)] + [f"L{i}" for i in range(1, 7)] + ["S1"]
)
"""Every level a spine can have, transitional anatomy included (T13, L6)."""

MIN_BODY_MM3 = 1500.0
"""Smaller body components are noise (the smallest thoracic body is ~5000 mm3)."""
MAX_BODY_HEIGHT_MM = 36.0
"""Taller body components are two bodies joined across a disc (the tallest body is ~30 mm)."""
MIN_PART_HEIGHT_MM = 8.0
"""A split never leaves a part shorter than this."""
MAX_BODIES = 40
"""More components than any spine has bodies (26) are noise: only the largest are kept."""
RIB_REACH_MM = 45.0
"""A rib head belongs to the body whose centroid is nearest, if within this distance."""
S1_SLAB_MM = 25.0
"""S1 is the part of the sacrum within this distance of its superior end."""


@dataclass
class LabelledVertebra:
    level: str
    centroid_index: np.ndarray
    """Centroid in model-grid voxel indices (axis0, axis1, axis2)."""
    box: tuple[slice, slice, slice]
    """Bounding box of the body on the model grid."""
    local_mask: np.ndarray = field(repr=False)
    """Boolean mask of the body inside ``box``."""
    grid_shape: tuple[int, int, int] = (0, 0, 0)
    rib_bearing: bool = False

    @property
    def mask(self) -> np.ndarray:
        """The body's mask on the whole model grid (built on demand: prefer box/local_mask)."""
        full = np.zeros(self.grid_shape, dtype=bool)
        full[self.box] = self.local_mask
        return full


@dataclass
class LevelResult:
    vertebrae: list[LabelledVertebra]
    anchor: str
    """Which anchors named the levels: 'ribs+cervical', 'ribs', 'sacrum', 'ribs+sacrum' or 'none'."""
    notes: list[str] = field(default_factory=list)


@dataclass
class Component:
    centroid: np.ndarray
    box: tuple[slice, slice, slice]
    local_mask: np.ndarray


def components(mask: np.ndarray, spacing_mm: np.ndarray, min_mm3: float, limit: int) -> list[Component]:
    """Connected components of ``mask`` at least ``min_mm3`` large (the ``limit`` largest),
    each with its centroid (voxel index), bounding box and mask inside the box.

    One labelling pass and per-box work only, so a noisy segmentation with hundreds of
    fragments costs milliseconds, not a full-grid pass per fragment."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = np.flatnonzero(sizes * float(np.prod(spacing_mm)) >= min_mm3)
    keep = keep[np.argsort(-sizes[keep], kind="stable")][:limit]
    boxes = ndimage.find_objects(labels)
    out = []
    for index in sorted(keep):
        box = boxes[index]
        local = labels[box] == index + 1
        offset = np.array([b.start for b in box], dtype=float)
        out.append(Component(np.argwhere(local).mean(axis=0) + offset, box, local))
    return out


def body_components(class_map: np.ndarray, spacing_mm: np.ndarray) -> list[Component]:
    """The vertebral-body components, large enough to be bodies; bodies the segmentation
    joined across a thin or missed disc are split again (see :func:`split_merged`)."""
    found = components(class_map == BODY, spacing_mm, MIN_BODY_MM3, MAX_BODIES)
    out: list[Component] = []
    for component in found:
        out += split_merged(component, spacing_mm)
    return out


def split_merged(component: Component, spacing_mm: np.ndarray) -> list[Component]:
    """Split a component taller than one vertebra at its narrowest cross-section.

    A vertebral body is at most ~30 mm tall; a component much taller is two or more bodies
    joined where the disc between them was under-segmented. Its cross-sectional area along
    the cranio-caudal axis (axis0) dips at each such disc: cut at the deepest dip that lies
    away from the ends and is below half the typical area, and look again at both parts."""
    heights = component.local_mask.any(axis=(1, 2))
    extent_mm = heights.sum() * float(spacing_mm[0])
    if extent_mm <= MAX_BODY_HEIGHT_MM:
        return [component]
    area = component.local_mask.sum(axis=(1, 2)).astype(float)
    smooth = np.convolve(area, np.ones(3) / 3.0, mode="same")
    rows = np.flatnonzero(heights)
    lo, hi = rows[0], rows[-1]
    margin = max(2, int(round(MIN_PART_HEIGHT_MM / float(spacing_mm[0]))))
    inner = np.arange(lo + margin, hi - margin + 1)
    if inner.size == 0:
        return [component]
    cut = int(inner[np.argmin(smooth[inner])])
    if smooth[cut] > 0.5 * np.median(area[rows]):
        return [component]
    parts = []
    for part_rows in (slice(None, cut), slice(cut + 1, None)):
        local = np.zeros_like(component.local_mask)
        local[part_rows] = component.local_mask[part_rows]
        if local.sum() * float(np.prod(spacing_mm)) < MIN_BODY_MM3:
            continue
        offset = np.array([b.start for b in component.box], dtype=float)
        part = Component(np.argwhere(local).mean(axis=0) + offset, component.box, local)
        parts += split_merged(part, spacing_mm)
    return parts or [component]


def rib_bearing_flags(
    class_map: np.ndarray, centroids: np.ndarray, spacing_mm: np.ndarray
) -> np.ndarray:
    """For each body centroid (voxel index), whether a rib-head component sits beside it."""
    flags = np.zeros(len(centroids), dtype=bool)
    if len(centroids) == 0:
        return flags
    labels, count = ndimage.label(class_map == RIB_HEAD)
    if count == 0:
        return flags
    rib_centres = np.array(ndimage.center_of_mass(labels > 0, labels, range(1, count + 1)))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = sizes * float(np.prod(spacing_mm)) >= 20.0  # a few voxels of rib head, not noise
    for centre in rib_centres[keep]:
        distances = np.linalg.norm((centroids - centre) * spacing_mm, axis=1)
        nearest = int(np.argmin(distances))
        if distances[nearest] <= RIB_REACH_MM:
            flags[nearest] = True
    if flags.any():
        # Ribs are contiguous from T1 to the last thoracic: fill a missed detection inside.
        first, last = np.flatnonzero(flags)[[0, -1]]
        flags[first : last + 1] = True
    return flags


def sacrum_top(class_map: np.ndarray, spacing_mm: np.ndarray) -> tuple[Component | None, float | None]:
    """The S1 slab of the largest sacrum component, and the sacrum's top (axis0 index)."""
    found = components(class_map == SACRUM, spacing_mm, MIN_BODY_MM3, 1)
    if not found:
        return None, None
    sacrum = found[0]
    # The top is the highest row with a substantial cross-section (axis0 runs to Superior):
    # thin spurs of sacrum class reaching up along L5 must not move it.
    area = sacrum.local_mask.sum(axis=(1, 2))
    rows = np.flatnonzero(area >= 0.3 * area.max())
    top_local = int(rows.max())
    slab_voxels = max(1, int(round(S1_SLAB_MM / float(spacing_mm[0]))))
    slab = sacrum.local_mask.copy()
    slab[: max(0, top_local - slab_voxels + 1)] = False
    offset = np.array([b.start for b in sacrum.box], dtype=float)
    top = float(sacrum.box[0].start + top_local)
    return Component(np.argwhere(slab).mean(axis=0) + offset, sacrum.box, slab), top


def name_levels(n_bodies: int, rib_flags: np.ndarray, has_sacrum: bool) -> tuple[list[str], str]:
    """Level names for bodies ordered superior to inferior (all above the sacrum)."""
    names = [""] * n_bodies
    ribs = np.flatnonzero(rib_flags)
    if len(ribs):
        first, last = int(ribs[0]), int(ribs[-1])
        if first > 0:
            anchor = "ribs+cervical"
            for k, i in enumerate(range(first, last + 1)):
                names[i] = f"T{k + 1}"
        else:
            anchor = "ribs"
            n_thoracic = last - first + 1
            start = max(1, 12 - n_thoracic + 1)  # more than 12 rib-bearing bodies: from T1
            for k, i in enumerate(range(first, last + 1)):
                names[i] = f"T{start + k}"
        for k, i in enumerate(range(first - 1, -1, -1)):
            names[i] = f"C{7 - k}"
        for k, i in enumerate(range(last + 1, n_bodies)):
            names[i] = f"L{k + 1}"
        if has_sacrum:
            anchor += "+sacrum"
        return names, anchor
    if has_sacrum:
        # Count up from the body above the sacrum: L5, L4, ..., L1, T12, ...
        order = ["L5", "L4", "L3", "L2", "L1"] + [f"T{t}" for t in range(12, 0, -1)] + [f"C{c}" for c in range(7, 0, -1)]
        for k, i in enumerate(range(n_bodies - 1, -1, -1)):
            names[i] = order[k] if k < len(order) else ""
        return names, "sacrum"
    return names, "none"


def label_levels(class_map: np.ndarray, spacing_mm: np.ndarray) -> LevelResult:
    """Find, order and name the vertebral bodies (and S1) of one study's class map."""
    spacing_mm = np.asarray(spacing_mm, dtype=float)
    notes: list[str] = []
    bodies = body_components(class_map, spacing_mm)
    s1, top = sacrum_top(class_map, spacing_mm)
    if top is not None and bodies:
        below = [b for b in bodies if b.centroid[0] <= top]  # coccyx or noise
        if below:
            notes.append(f"{len(below)} body component(s) at or below the sacrum ignored")
        bodies = [b for b in bodies if b.centroid[0] > top]
    bodies.sort(key=lambda b: -b.centroid[0])  # superior first
    centroids = np.array([b.centroid for b in bodies]) if bodies else np.zeros((0, 3))
    flags = rib_bearing_flags(class_map, centroids, spacing_mm)
    names, anchor = name_levels(len(bodies), flags, s1 is not None)
    invalid = [name for name in names if name and name not in KNOWN_LEVELS]
    if invalid:
        # More rib-bearing (or lumbar) bodies than any spine has: the anchors disagree with
        # the segmentation; those bodies are left unnamed rather than named impossibly.
        notes.append(f"{len(invalid)} bodies beyond the known levels ({', '.join(invalid)}) left unnamed")
        names = ["" if name in invalid else name for name in names]
    if anchor in ("ribs", "ribs+sacrum"):
        notes.append("cervical spine not in view: the last rib-bearing body was taken as T12")
    if anchor == "none":
        notes.append("neither ribs nor sacrum found: levels cannot be named")
    shape = tuple(class_map.shape)
    vertebrae = [
        LabelledVertebra(name, b.centroid, b.box, b.local_mask, shape, rib_bearing=bool(f))
        for name, b, f in zip(names, bodies, flags)
        if name
    ]
    if s1 is not None and s1.local_mask.any():
        vertebrae.append(LabelledVertebra("S1", s1.centroid, s1.box, s1.local_mask, shape))
    return LevelResult(vertebrae=vertebrae, anchor=anchor, notes=notes)
