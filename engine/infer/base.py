"""What every inference backend offers, and the small numeric helpers they share.

Two backends implement :class:`InferenceBackend`: :class:`engine.infer.onnx_backend.OnnxBackend`
(ONNX Runtime in-process, the embedded default) and the Triton client. The screening core
calls only this protocol, so the same study gives the same numbers through either.

Models output logits (see :mod:`engine.models.export`); :func:`sigmoid`, :func:`softmax` and
:func:`label_map` turn them into what post-processing reads, here, once.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from engine.errors import ConfigurationError


@runtime_checkable
class InferenceBackend(Protocol):
    """Segmentation and classification of one study's tensors, whatever runs them."""

    @property
    def versions(self) -> dict[str, str]:
        """Model name -> ``<weights version>+<sha256 prefix of the file>``, for ``pipeline_version``."""
        ...

    @property
    def seg_classes(self) -> tuple[str, ...]:
        """Name of each channel of :meth:`segment`'s output (index 0 is background)."""
        ...

    @property
    def crop_size(self) -> int:
        """Edge in voxels of the cubic crops :meth:`classify` takes."""
        ...

    def segment(self, volume: np.ndarray) -> np.ndarray:
        """Logits (C, D, H, W) float32 for one preprocessed volume (D, H, W) float32 in [0, 1]."""
        ...

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fracture probability (N,) and Genant grade probabilities (N, 4) for crops (N, 1, c, c, c)."""
        ...


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large negative logits."""
    x = np.asarray(logits, dtype=np.float32)
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the maximum so that large logits cannot overflow."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def check_volume(volume: np.ndarray, grid_multiple: int) -> None:
    """Refuse what a segmentation backend cannot take: not one float32 (D, H, W) volume, or
    extents that are not multiples of the model's grid (a settings mismatch, named)."""
    if volume.ndim != 3:
        raise ValueError(f"segment() takes one volume (D, H, W), got shape {volume.shape}")
    if volume.dtype != np.float32:
        raise TypeError(f"segment() takes float32 volumes, got {volume.dtype}")
    if any(extent % grid_multiple for extent in volume.shape):
        raise ConfigurationError(
            f"volume shape {volume.shape} is not a multiple of the segmentation model's grid {grid_multiple}: "
            f"preprocess.grid_multiple must be a multiple of {grid_multiple}"
        )


def check_crops(crops: np.ndarray, crop_size: int) -> None:
    """Refuse what a classification backend cannot take: not float32 crops (N, 1, c, c, c) of
    the model's crop size (the caller cut them wrong, or for another model)."""
    c = crop_size
    if crops.ndim != 5 or crops.shape[1:] != (1, c, c, c):
        raise ValueError(f"classify() takes crops (N, 1, {c}, {c}, {c}), got shape {crops.shape}")
    if crops.dtype != np.float32:
        raise TypeError(f"classify() takes float32 crops, got {crops.dtype}")


def channel_probability(logits: np.ndarray, channel: int) -> np.ndarray:
    """The softmax probability of one channel of (C, ...) logits, without the other C-1 maps:
    1 / sum_k exp(l_k - l_channel), accumulated one channel at a time (float32, no overflow:
    a term that overflows to inf gives probability 0, which is its limit)."""
    x = np.asarray(logits, dtype=np.float32)
    reference = x[channel]
    total = np.ones_like(reference)
    with np.errstate(over="ignore"):
        for k in range(x.shape[0]):
            if k != channel:
                total += np.exp(x[k] - reference)
    return (1.0 / total).astype(np.float32)


def label_map(seg_logits: np.ndarray) -> np.ndarray:
    """Class index per voxel (D, H, W) uint8 from logits (C, D, H, W): the argmax over channels."""
    if seg_logits.ndim != 4:
        raise ValueError(f"segmentation logits must be (C, D, H, W), got shape {seg_logits.shape}")
    if seg_logits.shape[0] > 256:
        raise ValueError(f"{seg_logits.shape[0]} classes do not fit a uint8 label map")
    return np.argmax(seg_logits, axis=0).astype(np.uint8)
