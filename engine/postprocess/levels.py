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

MIN_BODY_MM3 = 1500.0
"""Smaller body components are noise (the smallest thoracic body is ~5000 mm3)."""
RIB_REACH_MM = 45.0
"""A rib head belongs to the body whose centroid is nearest, if within this distance."""
S1_SLAB_MM = 25.0
"""S1 is the part of the sacrum within this distance of its superior end."""


@dataclass
class LabelledVertebra:
    level: str
    centroid_index: np.ndarray
    """Centroid in model-grid voxel indices (axis0, axis1, axis2)."""
    mask: np.ndarray = field(repr=False)
    """Boolean mask of this body on the model grid."""
    rib_bearing: bool = False


@dataclass
class LevelResult:
    vertebrae: list[LabelledVertebra]
    anchor: str
    """Which anchors named the levels: 'ribs+cervical', 'ribs', 'sacrum', 'ribs+sacrum' or 'none'."""
    notes: list[str] = field(default_factory=list)


def body_components(class_map: np.ndarray, spacing_mm: np.ndarray) -> list[np.ndarray]:
    """Masks of the vertebral-body components, large enough to be bodies."""
    labels, count = ndimage.label(class_map == BODY)
    if count == 0:
        return []
    voxel_mm3 = float(np.prod(spacing_mm))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return [labels == (i + 1) for i, size in enumerate(sizes) if size * voxel_mm3 >= MIN_BODY_MM3]


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


def sacrum_top(class_map: np.ndarray, spacing_mm: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """The S1 slab mask of the largest sacrum component, and the sacrum's top (axis0 index)."""
    labels, count = ndimage.label(class_map == SACRUM)
    if count == 0:
        return None, None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    if sizes.max() * float(np.prod(spacing_mm)) < MIN_BODY_MM3:
        return None, None
    rows = np.flatnonzero(largest.any(axis=(1, 2)))
    top = int(rows.max())  # axis0 runs to Superior: the top is the largest index
    slab_voxels = max(1, int(round(S1_SLAB_MM / float(spacing_mm[0]))))
    slab = largest.copy()
    slab[: max(0, top - slab_voxels + 1)] = False
    return slab, float(top)


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
    masks = body_components(class_map, spacing_mm)
    s1_mask, top = sacrum_top(class_map, spacing_mm)
    centroids = np.array([np.argwhere(m).mean(axis=0) for m in masks]) if masks else np.zeros((0, 3))
    if top is not None and len(masks):
        above = centroids[:, 0] > top  # bodies below the sacrum's top: coccyx or noise
        if (~above).any():
            notes.append(f"{int((~above).sum())} body component(s) at or below the sacrum ignored")
        masks = [m for m, a in zip(masks, above) if a]
        centroids = centroids[above]
    order = np.argsort(-centroids[:, 0]) if len(centroids) else np.array([], dtype=int)
    masks = [masks[i] for i in order]
    centroids = centroids[order] if len(order) else centroids
    flags = rib_bearing_flags(class_map, centroids, spacing_mm)
    names, anchor = name_levels(len(masks), flags, s1_mask is not None)
    if anchor == "ribs" or anchor == "ribs+sacrum":
        notes.append("cervical spine not in view: the last rib-bearing body was taken as T12")
    if anchor == "none":
        notes.append("neither ribs nor sacrum found: levels cannot be named")
    vertebrae = [
        LabelledVertebra(level=name, centroid_index=c, mask=m, rib_bearing=bool(f))
        for name, c, m, f in zip(names, centroids, masks, flags)
        if name
    ]
    if s1_mask is not None and s1_mask.any():
        vertebrae.append(
            LabelledVertebra(level="S1", centroid_index=np.argwhere(s1_mask).mean(axis=0), mask=s1_mask)
        )
    return LevelResult(vertebrae=vertebrae, anchor=anchor, notes=notes)
