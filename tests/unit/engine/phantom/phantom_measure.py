"""Height measurement of a labelled vertebral body, written independently of the generator.

The body's voxels are expressed in the frame given by truth (superior and posterior axes,
origin at the truth centroid); on the mid-sagittal band the anterior, middle and posterior
heights are the extents along the superior axis at 10 %, 50 % and 90 % of the body depth
(voxel centres projected on a tilted axis fill it densely, so no voxel size is added).
"""

from __future__ import annotations

import numpy as np

from engine.volume import index_to_lps


def measure_heights(labels: np.ndarray, affine: np.ndarray, entry: dict) -> dict[str, float]:
    """Anterior, middle and posterior heights (mm) of truth ``entry`` from the label volume."""
    points = index_to_lps(affine, np.argwhere(labels == entry["label_value"]).astype(float))
    superior = np.array(entry["axis_superior_lps"])
    posterior = np.array(entry["axis_posterior_lps"])
    left = np.cross(posterior, superior)
    rel = points - np.array(entry["centroid_lps_mm"])
    u, v, w = rel @ left, rel @ posterior, rel @ superior
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    band = np.abs(u) <= max(spacing[1], spacing[2]) * 0.75
    v_min, v_max = v[band].min(), v[band].max()
    out = {}
    for name, fraction in (("anterior", 0.1), ("middle", 0.5), ("posterior", 0.9)):
        at = v_min + fraction * (v_max - v_min)
        column = band & (np.abs(v - at) <= max(spacing[1], spacing[2]) * 0.75)
        out[name] = float(w[column].max() - w[column].min())
    return out
