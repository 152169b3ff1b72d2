"""The DALI pipeline: one graph, run on the GPU when there is one and on the CPU otherwise.

Graph (per sample; the batch holds studies of different shapes)::

    volume  int16 (D, H, W, 1)  --external source, zero copy-->  [.gpu() on GPU]
      -> resize   3-D linear, no antialiasing, to float32; per-sample output size and
                  region of interest (this one step resamples, crops and applies the
                  reorientation's flips: a reversed region of interest is a flip)
      -> window   clamp to hu_window, scale to [0, 1]
      -> pad      each spatial extent up to a multiple of grid_multiple, at the far end,
                  with 0 (normalised air)

Why the flips live in the resize: DALI only accepts densely packed arrays, so a flipped
numpy view must be copied first (one int16 copy of the whole study), and ``fn.flip`` writes
a flipped copy inside DALI; a reversed region of interest costs nothing. Measured by
``benchmarks/bench_preprocess_core.py`` on a feet-first, descending 512 x 512 x 400 study
(two flips), CPU, two shared cores: peak memory above the loaded study 385-410 MB with the
region of interest, 610 MB with either copy; median time 0.33 s against 0.36-0.41 s (time
differences are within the noise of a shared machine, memory ones are not). The rare axis
permutation (a non-axial acquisition) is done by numpy before the external source.

Why no antialiasing: the model sees plain trilinear samples on the model grid, exactly what
the scipy reference computes; DALI's antialias filter widens the kernel when downsampling
and has no exact scipy counterpart. Whatever is chosen, training must use the same.

Why resize comes first and the window after: the resize reads the int16 source directly
and writes float32 on the (much smaller) model grid, so no float copy of the full-
resolution volume ever exists.
"""

from __future__ import annotations

import logging

import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types
from nvidia.dali.data_node import DataNode
from nvidia.dali.pipeline import Pipeline

from engine.errors import ConfigurationError

log = logging.getLogger(__name__)

VOLUME_INPUT = "volume"
SIZE_INPUT = "size"
ROI_START_INPUT = "roi_start"
ROI_END_INPUT = "roi_end"


def cuda_device_count() -> int:
    """Number of CUDA devices DALI can see; 0 where CUDA or its driver is absent."""
    try:
        from nvidia.dali import backend

        return int(backend.GetCUDADeviceCount())
    except Exception as error:  # no driver, no libcuda, a broken install: all mean "no GPU"
        log.debug("no CUDA device visible to DALI: %s", error)
        return 0


def resolve_device(requested: str) -> str:
    """``cpu`` or ``gpu`` from the setting ``auto`` | ``cpu`` | ``gpu``.

    Asking for ``gpu`` where there is none is a configuration error of the process, not
    of a study: raising at start-up is better than failing every study later.
    """
    if requested not in {"auto", "cpu", "gpu"}:
        raise ConfigurationError(f"preprocess device {requested!r} must be auto, cpu or gpu")
    if requested == "cpu":
        return "cpu"
    available = cuda_device_count() > 0
    if requested == "gpu" and not available:
        raise ConfigurationError(
            "preprocess device 'gpu' was requested but no CUDA device is visible; "
            "set VCF_PREPROCESS__DEVICE=auto or cpu"
        )
    return "gpu" if available else "cpu"


def build_pipeline(
    device: str,
    batch_size: int,
    num_threads: int,
    hu_window: tuple[float, float],
    grid_multiple: int,
) -> Pipeline:
    """Build (once) the preprocessing pipeline; feed it with ``pipeline.run(**inputs)``.

    Inputs, one entry per sample: ``volume`` (C-contiguous int16 (D, H, W, 1)), ``size``
    (float32 (3,), output extent), ``roi_start`` and ``roi_end`` (float32 (3,), see
    :func:`engine.preprocess.plan.dali_roi`). ``run`` returns when the batch is done and
    no prefetching happens, so a zero-copy input only has to live for the duration of
    ``run`` and is released right after it.
    """
    if device not in {"cpu", "gpu"}:
        raise ConfigurationError(f"pipeline device {device!r} must be cpu or gpu")
    pipeline = Pipeline(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=0 if device == "gpu" else None,
        # The dynamic executor with no prefetching lets go of a zero-copy input as soon as
        # its run is over; the legacy executor keeps the last two batches of source
        # volumes alive (hundreds of MB per study) until later runs push them out.
        exec_dynamic=True,
        prefetch_queue_depth=1,
    )
    with pipeline:
        pipeline.set_outputs(define_graph(device, hu_window, grid_multiple))
    pipeline.build()
    return pipeline


def define_graph(device: str, hu_window: tuple[float, float], grid_multiple: int) -> DataNode:
    """The operators, declared inside a ``with pipeline:`` block; returns the output node.

    Kept apart from :func:`build_pipeline` so the GPU placement of the graph can be checked
    where no GPU exists to build it.
    """
    low, high = float(hu_window[0]), float(hu_window[1])
    volume = fn.external_source(
        name=VOLUME_INPUT, layout="DHWC", dtype=types.INT16, ndim=4, no_copy=True
    )
    size = fn.external_source(name=SIZE_INPUT, dtype=types.FLOAT, ndim=1)
    roi_start = fn.external_source(name=ROI_START_INPUT, dtype=types.FLOAT, ndim=1)
    roi_end = fn.external_source(name=ROI_END_INPUT, dtype=types.FLOAT, ndim=1)
    if device == "gpu":
        volume = volume.gpu()
    resampled = fn.resize(
        volume,
        size=size,
        roi_start=roi_start,
        roi_end=roi_end,
        roi_relative=False,
        interp_type=types.INTERP_LINEAR,
        antialias=False,
        subpixel_scale=False,
        dtype=types.FLOAT,
    )
    windowed = (dmath.clamp(resampled, low, high) - low) * (1.0 / (high - low))
    # shape=(1, 1, 1): pad each sample to its own next multiple, not to the largest
    # sample of the batch (fn.pad's default).
    return fn.pad(
        windowed,
        axes=(0, 1, 2),
        shape=(1, 1, 1),
        align=(grid_multiple,) * 3,
        fill_value=0.0,
    )
