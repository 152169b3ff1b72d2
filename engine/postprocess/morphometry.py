"""Vertebral-body heights from a segmentation mask (plain numpy, no torch).

Genant's grade compares the anterior, middle and posterior heights of a vertebral body,
measured along the spine, with the height it should have. Here the heights come from the
mask of one body on any grid (isotropic or not, any orientation) and its index -> LPS affine.

How a height is measured, and why:

- The body is described in a local frame: ``s`` along the spine axis (cranial), ``t`` along
  the anterior direction (orthogonalised against the axis), ``w`` across (lateral). The axis
  comes from the neighbouring centroids (:func:`spine_axes`), so kyphosis, lordosis and
  scoliosis tilts are measured along the spine rather than along the scanner's z.
- Rays parallel to the axis are cast through the central half of the body's width
  (Genant reads a mid-sagittal plane), in three bands of the antero-posterior depth centred
  at 15%, 50% and 85% from the posterior wall, each 15% wide. Along a ray the mask is
  sampled with trilinear interpolation and integrated: for a binary mask that is the
  voxel count times the spacing along the ray, for a soft mask (probabilities, partial
  volume) it is sub-voxel. A ray's height is therefore a count, not a first-to-last
  extent, so holes and single noise voxels change it by at most a voxel.
- A band's height is the interquartile mean of its rays: the quartiles on either side
  drop endplate notches (Schmorl's nodes), noise spurs and grazing rays, and the mean of
  the middle half averages the rays' different phases against the grid, which is where
  sub-voxel precision comes from on an oblique spine.
- The anterior and posterior heights are extrapolated from the 15% and 85% bands to the
  walls along the straight line through them: exact for a box and for a wedge, while
  the rounded corners of a real body (the outer 7.5%) never enter a band. Without it a
  wedge with 40% anterior loss would read as about 30%. The raw band heights are kept.
- Before measuring, the mask keeps its largest 26-connected component and its enclosed
  holes are filled: detached noise voxels and segmentation holes then cost nothing.

Precision, measured on 60 synthetic boxes, wedges and biconcave bodies (heights 14-27 mm)
at random sub-voxel positions per configuration; worst / 95th percentile / mean absolute
error of each height (the tests assert the worst-case figures):

- 2 mm voxels, binary mask, spine axis along a grid axis: 2.1 / 1.8 / 0.8 mm. A binary
  mask cannot say where inside its last voxel an endplate lies and every ray shares the
  same phase, so the error is bounded by about one voxel along the axis; the wall
  extrapolation multiplies a band's error by up to 1.2.
- 2 mm voxels, binary mask, axis tilted 20 degrees in one plane: 1.5 / 1.1 / 0.4 mm (a thin
  14 mm upper thoracic body: 1.7 mm worst, above 1.5 in 4 of 200 phases); tilted in both
  planes (15 and 12 degrees): 0.8 / 0.5 / 0.2 mm.
- 2 mm voxels, soft mask (partial-volume occupancy or segmentation probabilities): 0.7 /
  0.5 / 0.2 mm in any orientation. Feed probabilities when you have them: at 2 mm a
  binary mask's 2 mm worst case is 7-14% of a body's height, close to a Genant step.
- 0.7 mm voxels, binary: 0.8 / 0.6 / 0.2 mm aligned, 0.5 / 0.3 / 0.1 mm tilted.
- 2.5 mm slices along the axis (0.7 mm in plane): 3.0 / 2.5 / 1.0 mm, one slice.
The AP depth and width are good to about one voxel; a binary box's centroid to half a
voxel per axis. A body takes about 5 ms at 2 mm and 50-80 ms at 0.7 mm (two cores).

On the held-out clinical-size phantoms (40 studies), the method and the segmentation were
told apart by measuring the *true* label masks (0.75 x 0.75 x 2.5 mm) along the true axes:
every height within about 5% at the median (fractured bodies: wedge anterior 0.95,
biconcave middle 1.06, crush 0.99 of the truth). On the *screened* soft masks the posterior
height is still right (median 1.02) but the smallest height of a fractured body reads 16%
too tall (wedge 12%, biconcave 40%, crush 11%): the segmentation fills in a collapsed
endplate, so the height loss of grade >= 2 bodies is under-read by 0.13 at the median.
Using the true spine axis instead of the centroid-based one changes nothing (the axes
differ by 1.4 degrees at the median), and lower ray quantiles, narrower lateral slabs or
another iso-level trade that bias for noise on normal bodies. Normal bodies read an
own-ratio loss >= 20% in 13% of cases (degenerative levels 32%, metal and sclerotic
metastases 40%, first/last vertebra of the field 33% against the neighbours): the
classifier, not this measurement, decides whether a body is fractured
(:mod:`.fusion`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from engine.volume import index_to_lps, lps_to_index, spacing_of

ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])
"""Anterior in DICOM patient coordinates: LPS is tied to the patient, so -y whatever the
patient's position on the table (supine, prone, feet first)."""
SUPERIOR_LPS = np.array([0.0, 0.0, 1.0])

BAND_CENTRES = (0.15, 0.50, 0.85)
"""Band centres as fractions of the AP depth from the posterior wall: posterior, middle, anterior."""
BAND_WIDTH = 0.15
"""Width of each band, as a fraction of the AP depth."""
LATERAL_FRACTION = 0.5
"""Share of the body's width, about its middle, through which rays are cast."""

_MIN_AXIS_ANGLE_DEG = 30.0  # the anterior hint must stand this far from the spine axis
_MIN_RAYS = 3


class MeasurementError(ValueError):
    """This mask cannot give heights (empty, too thin, degenerate directions)."""


@dataclass(frozen=True)
class BodyMeasurement:
    """Heights and shape of one vertebral body; lengths in millimetres."""

    anterior_mm: float
    middle_mm: float
    posterior_mm: float
    band_heights_mm: tuple[float, float, float]
    """Interquartile-mean heights of the (posterior, middle, anterior) bands, before the
    extrapolation of the outer two to the walls."""
    centroid_lps_mm: tuple[float, float, float]
    ap_depth_mm: float
    width_mm: float
    volume_mm3: float
    touches_border: bool
    """The body reaches the edge of the array: it may be cut by the field of view."""
    rays_per_band: tuple[int, int, int]


def spine_axes(centroids_lps: np.ndarray) -> np.ndarray:
    """Unit spine direction (pointing cranially) at each of ``n`` centroids ordered cranial to caudal.

    Central differences between the neighbours, one-sided at the two ends; a single
    vertebra gets the patient's superior direction. Each vector points to the head
    (positive LPS z for an upright spine); the sign does not change any height.
    """
    centroids = np.asarray(centroids_lps, dtype=float).reshape(-1, 3)
    count = len(centroids)
    if count < 2:
        return np.tile(SUPERIOR_LPS, (count, 1))
    axes = np.empty_like(centroids)
    axes[1:-1] = centroids[:-2] - centroids[2:]
    axes[0] = centroids[0] - centroids[1]
    axes[-1] = centroids[-2] - centroids[-1]
    norms = np.linalg.norm(axes, axis=1, keepdims=True)
    if np.any(norms < 1e-6):
        raise MeasurementError(
            f"two vertebrae share a centroid (spacing {norms.min():.3g} mm); cannot find the spine axis"
        )
    axes /= norms
    flip = axes @ SUPERIOR_LPS < 0
    axes[flip] *= -1.0
    return axes


def anterior_direction(axis_lps: np.ndarray, hint_lps: np.ndarray = ANTERIOR_LPS) -> np.ndarray:
    """``hint_lps`` made perpendicular to the spine axis and of unit length."""
    axis = _unit(axis_lps, "spine axis")
    hint = np.asarray(hint_lps, dtype=float)
    perpendicular = hint - (hint @ axis) * axis
    norm = np.linalg.norm(perpendicular)
    hint_norm = np.linalg.norm(hint)
    if hint_norm == 0 or norm / hint_norm < np.sin(np.radians(_MIN_AXIS_ANGLE_DEG)):
        angle = np.degrees(np.arccos(np.clip(abs(hint @ axis) / max(hint_norm, 1e-12), 0, 1)))
        raise MeasurementError(
            f"anterior direction {hint.round(3).tolist()} is {angle:.1f} degrees from the spine "
            f"axis {axis.round(3).tolist()}; at least {_MIN_AXIS_ANGLE_DEG:.0f} are needed"
        )
    return perpendicular / norm


def measure_body(
    mask: np.ndarray,
    affine: np.ndarray,
    axis_lps: np.ndarray,
    anterior_lps: np.ndarray = ANTERIOR_LPS,
) -> BodyMeasurement:
    """Anterior, middle and posterior heights of the one body in ``mask``.

    ``mask`` is boolean, or a float occupancy / probability in [0, 1] (0.5 is the boundary);
    ``affine`` maps its indices to LPS mm; ``axis_lps`` is the local spine direction and
    ``anterior_lps`` an anterior direction (made perpendicular to the axis here).
    """
    occupancy, touches_border, offset = _clean(mask)
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise MeasurementError(f"affine must be 4x4; got {affine.shape}")
    local_affine = affine.copy()
    local_affine[:3, 3] = index_to_lps(affine, offset)
    axis = _unit(axis_lps, "spine axis")
    anterior = anterior_direction(axis, anterior_lps)
    lateral = np.cross(axis, anterior)

    index = np.argwhere(occupancy > 0)
    weight = occupancy[tuple(index.T)].astype(float)
    points = index_to_lps(local_affine, index)
    centroid = (points * weight[:, None]).sum(axis=0) / weight.sum()
    relative = points - centroid
    s, t, w = relative @ axis, relative @ anterior, relative @ lateral
    solid = weight >= 0.5

    spacing = spacing_of(local_affine)
    half_voxel_t = 0.5 * np.linalg.norm(local_affine[:3, :3].T @ anterior)
    half_voxel_w = 0.5 * np.linalg.norm(local_affine[:3, :3].T @ lateral)
    w_low, w_high = np.percentile(w[solid], [0.5, 99.5])
    width = (w_high - w_low) + 2 * half_voxel_w
    w_mid = 0.5 * (w_low + w_high)
    slab = solid & (np.abs(w - w_mid) <= 0.5 * LATERAL_FRACTION * width)
    t_low, t_high = np.percentile(t[slab], [0.5, 99.5])
    t_post, t_ant = t_low - half_voxel_t, t_high + half_voxel_t
    depth = t_ant - t_post
    if depth < 3 * spacing.min() or width < 3 * spacing.min():
        raise MeasurementError(
            f"body is {depth:.1f} mm deep and {width:.1f} mm wide: too small to measure on "
            f"{spacing.round(2).tolist()} mm voxels"
        )

    step = spacing.min() / 2.0
    s_range = (s.min() - 2 * spacing.max(), s.max() + 2 * spacing.max())
    band_heights: list[float] = []
    rays: list[int] = []
    for centre in BAND_CENTRES:
        t_band = t_post + depth * np.array([centre - BAND_WIDTH / 2, centre + BAND_WIDTH / 2])
        heights = _ray_heights(
            occupancy, local_affine, centroid, (axis, anterior, lateral),
            (t_band[0], t_band[1]), _central(w_mid, width), s_range, step,
        )
        if len(heights) < _MIN_RAYS:
            raise MeasurementError(
                f"only {len(heights)} rays crossed the body in the band at {centre:.0%} of its depth"
            )
        band_heights.append(_interquartile_mean(heights))
        rays.append(len(heights))

    posterior_band, middle, anterior_band = band_heights
    slope = (anterior_band - posterior_band) / (BAND_CENTRES[2] - BAND_CENTRES[0])
    posterior_height = max(posterior_band - slope * BAND_CENTRES[0], 0.0)
    anterior_height = max(anterior_band + slope * (1.0 - BAND_CENTRES[2]), 0.0)
    voxel_volume = abs(np.linalg.det(local_affine[:3, :3]))
    return BodyMeasurement(
        anterior_mm=float(anterior_height),
        middle_mm=float(middle),
        posterior_mm=float(posterior_height),
        band_heights_mm=(float(posterior_band), float(middle), float(anterior_band)),
        centroid_lps_mm=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
        ap_depth_mm=float(depth),
        width_mm=float(width),
        volume_mm3=float(weight.sum() * voxel_volume),
        touches_border=touches_border,
        rays_per_band=tuple(rays),  # type: ignore[arg-type]
    )


def mask_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Occupancy-weighted centre of a mask in LPS mm (no cleaning; for the spine axis)."""
    occupancy = np.asarray(mask, dtype=np.float32)
    index = np.argwhere(occupancy > 0)
    if len(index) == 0:
        raise MeasurementError("the mask is empty")
    weight = occupancy[tuple(index.T)].astype(float)
    return (index_to_lps(affine, index) * weight[:, None]).sum(axis=0) / weight.sum()


# --------------------------------------------------------------------------- internals


def _unit(vector: np.ndarray, name: str) -> np.ndarray:
    vector = np.asarray(vector, dtype=float).reshape(3)
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm < 1e-9:
        raise MeasurementError(f"{name} {vector.tolist()} has no direction")
    return vector / norm


def _central(w_mid: float, width: float) -> tuple[float, float]:
    half = 0.5 * LATERAL_FRACTION * width
    return (w_mid - half, w_mid + half)


def _clean(mask: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray]:
    """Occupancy of the largest component with holes filled, cropped; border contact; crop offset.

    The crop comes first (a body is a few thousand voxels of a multi-million-voxel model
    grid), so labelling and filling cost the body's size, not the grid's.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise MeasurementError(f"a body mask is 3-D; got shape {mask.shape}")
    if mask.dtype != bool:
        low, high = float(mask.min(initial=0.0)), float(mask.max(initial=0.0))
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 1:
            raise MeasurementError(f"mask values must lie in [0, 1]; got {low:.3g}..{high:.3g}")
    solid_full = mask if mask.dtype == bool else mask >= 0.5
    extents = [np.flatnonzero(solid_full.any(axis=tuple(k for k in range(3) if k != a))) for a in range(3)]
    if any(len(e) == 0 for e in extents):
        raise MeasurementError("the mask is empty (no voxel at or above 0.5)")
    lo = np.array([max(int(e[0]) - 2, 0) for e in extents])
    hi = np.array([min(int(e[-1]) + 3, n) for e, n in zip(extents, mask.shape)])
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    occupancy = mask[window].astype(np.float32)
    solid = solid_full[window]
    cube = np.ones((3, 3, 3), dtype=bool)
    labels, count = ndimage.label(solid, structure=cube)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        solid = labels == sizes.argmax()
    inside = np.argwhere(solid)
    first, last = inside.min(axis=0) + lo, inside.max(axis=0) + lo
    touches_border = bool(np.any(first == 0) or np.any(last == np.array(mask.shape) - 1))
    filled = ndimage.binary_fill_holes(solid)
    rim = ndimage.binary_dilation(filled, structure=cube)
    cleaned = np.where(rim, occupancy, 0.0).astype(np.float32)
    cleaned[filled & (cleaned < 0.5)] = 1.0  # enclosed holes count as bone
    return cleaned, touches_border, lo.astype(float)


def _ray_heights(
    occupancy: np.ndarray,
    affine: np.ndarray,
    centroid: np.ndarray,
    frame: tuple[np.ndarray, np.ndarray, np.ndarray],
    t_range: tuple[float, float],
    w_range: tuple[float, float],
    s_range: tuple[float, float],
    step: float,
) -> np.ndarray:
    """Integral of the interpolated mask along rays parallel to the axis, one per (t, w) node.

    ``frame`` is (axis, anterior, lateral); the ranges are relative to ``centroid``.
    """
    t_nodes = _nodes(t_range[0], t_range[1], step)
    w_nodes = _nodes(w_range[0], w_range[1], step)
    s_step = step / 1.5
    s_nodes = np.arange(s_range[0], s_range[1] + s_step, s_step)
    # The map LPS -> index is affine, so each sample's index is the centroid's index plus
    # the three offsets carried through the linear part: no per-sample matrix product.
    to_index = np.linalg.inv(affine[:3, :3])
    base = lps_to_index(affine, centroid)
    axis, anterior, lateral = (to_index @ direction for direction in frame)
    coordinates = np.stack([
        base[k]
        + t_nodes[:, None, None] * anterior[k]
        + w_nodes[None, :, None] * lateral[k]
        + s_nodes[None, None, :] * axis[k]
        for k in range(3)
    ]).reshape(3, -1)
    samples = ndimage.map_coordinates(occupancy, coordinates, order=1, mode="constant", cval=0.0)
    heights = samples.reshape(len(t_nodes) * len(w_nodes), len(s_nodes)).sum(axis=1) * s_step
    return heights[heights > 0]


def _nodes(low: float, high: float, step: float) -> np.ndarray:
    """Evenly spread nodes inside [low, high], about ``step`` apart, at least one."""
    count = max(int(np.floor((high - low) / step)) + 1, 1)
    return low + (np.arange(count) + 0.5) * (high - low) / count


def _interquartile_mean(values: np.ndarray) -> float:
    low, high = np.percentile(values, [25, 75])
    middle = values[(values >= low) & (values <= high)]
    return float(middle.mean() if len(middle) else np.median(values))
