"""The preprocessing in plain numpy/scipy: the yardstick the DALI pipeline is tested against.

It shares only the *plan's affine* with the pipeline (``model_to_source``, from
:mod:`engine.preprocess.plan`): it samples the stored array through that full 4x4 map
with ``scipy.ndimage.affine_transform`` (order 1, edge values beyond the last voxel
centre), so the permutation, the flips folded into DALI's region of interest and DALI's
pixel-area convention are all checked independently. Slow, for tests and audits only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.preprocess.plan import SamplePlan


def window(values: np.ndarray, hu_window: tuple[float, float]) -> np.ndarray:
    """Clip to ``hu_window`` and scale to [0, 1], in float32."""
    low, high = np.float32(hu_window[0]), np.float32(hu_window[1])
    clipped = np.clip(values.astype(np.float32, copy=False), low, high)
    return (clipped - low) * (np.float32(1.0) / (high - low))


def reference_tensor(
    hu: np.ndarray, plan: SamplePlan, hu_window: tuple[float, float]
) -> np.ndarray:
    """The model tensor of ``plan`` computed by scipy: float32 (D, H, W), padded with 0."""
    matrix = plan.model_to_source
    resampled = ndimage.affine_transform(
        hu,
        matrix[:3, :3],
        offset=matrix[:3, 3],
        output_shape=plan.resized_shape,
        output=np.float32,
        order=1,
        mode="nearest",
        prefilter=False,
    )
    tensor = np.zeros(plan.padded_shape, np.float32)
    depth, height, width = plan.resized_shape
    tensor[:depth, :height, :width] = window(resampled, hu_window)
    return tensor
