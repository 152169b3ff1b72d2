"""The geometry of preprocessing one volume, computed before any voxel moves (plain math).

Output-grid convention (the one thing a model voxel's position depends on)
--------------------------------------------------------------------------
Voxels are points at their centres, index ``i`` at the centre of the cell ``[i-0.5, i+0.5]``.
The model grid keeps the *target spacing exactly* and is *centred on the source field of
view*: along a canonical axis with ``n`` source voxels of spacing ``s`` and a target spacing
``t``, the grid has ``m = max(1, round(n*s/t))`` voxels and model index ``j`` samples the
source at the fractional index::

    x(j) = (n - 1)/2 + (j - (m - 1)/2) * t/s

This is DALI's own "pixel-area" convention (output cell ``[j, j+1]`` maps onto the input
region of interest scaled by ``t/s``), not "align corners" (which would pin the first and
last voxel centres together and bend the spacing to ``(n-1)s/(m-1)``). Because ``m*t`` is
within half a target voxel of ``n*s`` on each side, every model voxel centre lies inside
the source's field of view; a centre beyond the outermost source voxel centre (at most half
a source voxel) takes the value of that edge voxel. The reference implementation uses the
same formula through the affine (``scipy.ndimage.affine_transform``, ``mode="nearest"``).

A crop (when ``max_shape`` is set) keeps model voxels ``start .. start+max-1`` of that grid,
so the affine moves by ``start`` voxels. Padding to ``grid_multiple`` is added at the far end
of each axis, so it leaves voxel (0, 0, 0) and the affine untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.preprocess.orientation import Reorientation, reorientation
from engine.settings import PreprocessSettings
from engine.volume import spacing_of

_BODY_SAMPLES_PER_AXIS = 64
_BODY_PLANE_FRACTION = 0.05


def resampled_extent(shape: np.ndarray, spacing: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Voxels per axis of the model grid: the source extent in mm over the target spacing."""
    millimetres = np.asarray(shape, float) * np.asarray(spacing, float)
    extent = np.rint(millimetres / np.asarray(target, float))
    return np.maximum(extent, 1).astype(int)


def grid_matrix(
    canonical_shape: np.ndarray,
    canonical_spacing: np.ndarray,
    target: np.ndarray,
    extent: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """4x4 matrix mapping a model index to a (fractional) canonical source index.

    ``extent`` is the uncropped grid size and ``start`` the first kept voxel of a crop
    (zeros for no crop); see the module docstring for the convention.
    """
    n = np.asarray(canonical_shape, float)
    ratio = np.asarray(target, float) / np.asarray(canonical_spacing, float)
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag(ratio)
    first = (np.asarray(extent, float) - 1) / 2 - np.asarray(start, float)  # voxels from centre
    matrix[:3, 3] = (n - 1) / 2 - first * ratio
    return matrix


def padded_extent(extent: np.ndarray, multiple: int) -> np.ndarray:
    """Each extent rounded up to a multiple of ``multiple``."""
    extent = np.asarray(extent, int)
    return (-(-extent // multiple)) * multiple


def body_centre_index(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """Centre of the body's bounding box, as a fractional index of ``hu``'s own axes.

    A heuristic for centring a crop, read from a strided sample (at most 64 planes per
    axis, so it costs microseconds and no copy of the volume): along each axis the planes
    holding at least 5% of the fullest plane's voxels above ``threshold_hu`` count as body,
    which ignores stray noise and thin objects. An all-air volume gives its centre.
    """
    steps = [max(1, size // _BODY_SAMPLES_PER_AXIS) for size in hu.shape]
    mask = hu[:: steps[0], :: steps[1], :: steps[2]] > threshold_hu
    centre = (np.asarray(hu.shape, float) - 1) / 2
    if not mask.any():
        return centre
    for axis in range(3):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis))
        planes = np.flatnonzero(profile >= max(1.0, _BODY_PLANE_FRACTION * profile.max()))
        centre[axis] = (planes[0] + planes[-1]) / 2 * steps[axis]
    return centre


def crop_start(extent: np.ndarray, max_extent: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """First kept voxel per axis of a crop of ``max_extent`` centred on ``centre``.

    Axes already within ``max_extent`` start at 0; a crop never leaves the grid.
    """
    extent = np.asarray(extent, int)
    max_extent = np.asarray(max_extent, int)
    wanted = np.rint(np.asarray(centre, float) - (max_extent - 1) / 2).astype(int)
    start = np.clip(wanted, 0, np.maximum(extent - max_extent, 0))
    return np.where(extent > max_extent, start, 0)


def dali_roi(output_to_input: np.ndarray, extent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DALI resize ``roi_start``/``roi_end`` realising an axis-wise map from output to input.

    DALI's resize puts output cell ``[j, j+1]`` onto ``roi_start + [j, j+1] * (roi_end -
    roi_start) / extent`` in input pixel-edge coordinates (pixel ``i`` spans ``[i, i+1]``,
    its centre is index ``i`` plus 0.5). An output index ``j`` that must sample input index
    ``a + b*j`` therefore needs ``roi_start = a + 0.5 - b/2`` and ``roi_end = roi_start +
    b*extent``; ``b < 0`` gives ``roi_start > roi_end``, which DALI reads as a flip.
    """
    linear = output_to_input[:3, :3]
    if np.any(np.abs(linear - np.diag(np.diag(linear))) > 1e-9):
        raise ValueError(f"the output-to-input map is not axis-wise:\n{output_to_input}")
    scale = np.diag(linear)
    roi_start = output_to_input[:3, 3] + 0.5 - scale / 2
    roi_end = roi_start + scale * np.asarray(extent, float)
    return roi_start, roi_end


@dataclass(frozen=True)
class SamplePlan:
    """Everything the pipeline needs for one volume, and the geometry of its result.

    ``permutation`` is applied on the numpy side (a transpose, copied only when it is not
    the identity); the flips of the reorientation are folded into the resize's region of
    interest. ``resized_shape`` is the model grid after any crop and before padding;
    ``padded_shape`` is the tensor's final shape. ``affine`` maps a model index to LPS mm
    and ``model_to_source`` maps a model index to the stored source index.
    """

    permutation: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    resized_shape: tuple[int, int, int]
    padded_shape: tuple[int, int, int]
    crop_start: tuple[int, int, int]
    roi_start: np.ndarray
    roi_end: np.ndarray
    affine: np.ndarray
    model_to_source: np.ndarray
    source_shape: tuple[int, int, int]
    source_affine: np.ndarray


def plan_sample(hu: np.ndarray, affine: np.ndarray, settings: PreprocessSettings) -> SamplePlan:
    """The full plan for one stored volume (``hu`` is read only to centre a crop)."""
    orient: Reorientation = reorientation(affine, _triple(hu.shape), settings.oblique_tolerance_deg)
    canonical_spacing = spacing_of(orient.affine)
    target = np.asarray(settings.spacing_mm, float)
    extent = resampled_extent(np.asarray(orient.shape), canonical_spacing, target)
    start = np.zeros(3, int)
    kept = extent.copy()
    if settings.max_shape is not None and np.any(extent > np.asarray(settings.max_shape)):
        max_extent = np.asarray(settings.max_shape, int)
        uncropped = grid_matrix(np.asarray(orient.shape), canonical_spacing, target, extent, start)
        stored_centre = np.append(body_centre_index(hu, settings.body_threshold_hu), 1.0)
        canonical_centre = np.linalg.inv(orient.canonical_to_stored()) @ stored_centre
        model_centre = np.linalg.inv(uncropped) @ canonical_centre
        start = crop_start(extent, max_extent, model_centre[:3])
        kept = np.minimum(extent, max_extent)
    to_canonical = grid_matrix(np.asarray(orient.shape), canonical_spacing, target, extent, start)
    model_to_source = orient.canonical_to_stored() @ to_canonical
    # The DALI input is the stored array transposed by the permutation (not flipped).
    pick = np.zeros((4, 4))
    pick[3, 3] = 1.0
    for k, axis in enumerate(orient.permutation):
        pick[k, axis] = 1.0
    roi_start, roi_end = dali_roi(pick @ model_to_source, kept)
    return SamplePlan(
        permutation=orient.permutation,
        flips=orient.flips,
        resized_shape=_triple(kept),
        padded_shape=_triple(padded_extent(kept, settings.grid_multiple)),
        crop_start=_triple(start),
        roi_start=roi_start,
        roi_end=roi_end,
        affine=orient.affine @ to_canonical,
        model_to_source=model_to_source,
        source_shape=_triple(hu.shape),
        source_affine=np.asarray(affine, float).copy(),
    )


def _triple(values) -> tuple[int, int, int]:
    first, second, third = (int(v) for v in values)
    return first, second, third


def dali_input(hu: np.ndarray, plan: SamplePlan) -> np.ndarray:
    """The array handed to DALI: (D, H, W, 1) int16, C-contiguous, permuted but not flipped.

    For the usual axial series the permutation is the identity and this is a view of the
    loaded volume (no copy); otherwise numpy makes one int16 copy.
    """
    if hu.dtype != np.int16:
        raise TypeError(f"preprocessing expects an int16 HU volume; got {hu.dtype}")
    arranged = hu if plan.permutation == (0, 1, 2) else hu.transpose(plan.permutation)
    return np.ascontiguousarray(arranged)[..., np.newaxis]
