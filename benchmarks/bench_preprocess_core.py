"""Preprocessing of one large CT study: the DALI pipeline against a naive scipy baseline.

Each case runs in its own fresh process so its peak resident memory (ru_maxrss) is its own.
The study is synthetic (an elliptical body with noise) of 512 x 512 x 400 int16 voxels at
0.7 x 0.7 x 1 mm (210 MB), stored feet first with descending slices so that two of the
three axes need a flip to reach the canonical orientation.

Cases:
  dali_roi_flip     the engine: flips folded into the resize's region of interest
  numpy_copy_flip   flips applied on the numpy view, copied contiguous for DALI
  dali_fn_flip      flips applied by fn.flip inside DALI before the resize
  scipy_zoom        baseline: scipy.ndimage.zoom(volume.astype(float64), factors, order=1)
  reference_check   max |DALI - scipy reference| on the whole model tensor

Usage: python benchmarks/bench_preprocess_core.py [--shape 400 512 512] [--repeats 3]
Prints one JSON object per case and a summary table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CASES = ("dali_roi_flip", "numpy_copy_flip", "dali_fn_flip", "scipy_zoom", "reference_check")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def synthetic_study(shape: tuple[int, int, int]):
    """An int16 feet-first, descending-slice study, built slice by slice (no float volume)."""
    from engine.volume import Volume, affine_from_dicom

    slices, rows, columns = shape
    rng = np.random.default_rng(0)
    hu = np.empty(shape, np.int16)
    y, x = np.mgrid[0:rows, 0:columns]
    body = ((y - rows / 2) / (rows * 0.35)) ** 2 + ((x - columns / 2) / (columns * 0.45)) ** 2 <= 1
    spine = ((y - rows * 0.7) ** 2 + (x - columns / 2) ** 2) <= (rows * 0.05) ** 2
    for k in range(slices):
        plane = np.where(body, np.int16(40), np.int16(-1000)).astype(np.int16)
        plane[spine] = 700 + (k % 40) * 5
        plane += rng.integers(-20, 21, size=plane.shape, dtype=np.int16)
        hu[k] = plane
    affine = affine_from_dicom(
        np.array([180.0, -180.0, 0.0]), np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]),
        np.array([0, 0, -1.0]), (0.7, 0.7),
    )
    return Volume(hu, affine, "1.2.826.0.1.3680043.10.9.1", "1.2.826.0.1.3680043.10.9.1.1")


def _timed(function, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def run_case(case: str, shape: tuple[int, int, int], repeats: int) -> dict:
    from engine.preprocess import Preprocessor, plan_sample
    from engine.settings import PreprocessSettings

    volume = synthetic_study(shape)
    settings = PreprocessSettings(device="cpu", batch_size=1)
    rss_before = _current_rss_mb()
    record: dict = {"case": case, "shape": list(shape), "source_mb": volume.hu.nbytes / 2**20}

    if case == "dali_roi_flip":
        build_start = time.perf_counter()
        worker = Preprocessor(settings)
        record["build_s"] = time.perf_counter() - build_start
        times, (result,) = _timed(lambda: worker([volume]), repeats)
        record["output_shape"] = list(result.tensor.shape)
    elif case in ("numpy_copy_flip", "dali_fn_flip"):
        times, output = _timed(_flip_variant(case, volume, settings), repeats)
        record["output_shape"] = list(output.shape)
    elif case == "scipy_zoom":
        from scipy import ndimage

        factors = volume.spacing / np.asarray(settings.spacing_mm)
        times, output = _timed(
            lambda: ndimage.zoom(volume.hu.astype(np.float64), factors, order=1), repeats
        )
        record["output_shape"] = list(output.shape)
    elif case == "reference_check":
        from engine.preprocess.reference import reference_tensor

        (result,) = Preprocessor(settings)([volume])
        plan = plan_sample(volume.hu, volume.affine, settings)
        times, expected = _timed(lambda: reference_tensor(volume.hu, plan, settings.hu_window), 1)
        record["max_abs_diff"] = float(np.abs(result.tensor - expected).max())
        record["output_shape"] = list(result.tensor.shape)
    else:
        raise SystemExit(f"unknown case {case!r}; known: {', '.join(CASES)}")
    record.update(
        first_s=times[0],
        median_s=float(np.median(times)),
        best_s=min(times),
        rss_before_mb=rss_before,
        peak_rss_mb=_peak_rss_mb(),
        peak_over_before_mb=_peak_rss_mb() - rss_before,
    )
    return record


def _flip_variant(case: str, volume, settings):
    """A one-off pipeline that resamples without flips, the flips done elsewhere."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types
    from nvidia.dali.pipeline import Pipeline

    from engine.preprocess.heap import release_free_heap
    from engine.preprocess.orientation import reorientation
    from engine.preprocess.plan import dali_roi, grid_matrix, resampled_extent
    from engine.volume import spacing_of

    orient = reorientation(volume.affine, volume.shape)
    spacing = spacing_of(orient.affine)
    extent = resampled_extent(np.asarray(orient.shape), spacing, np.asarray(settings.spacing_mm))
    to_canonical = grid_matrix(
        np.asarray(orient.shape), spacing, np.asarray(settings.spacing_mm), extent, np.zeros(3)
    )
    roi_start, roi_end = dali_roi(to_canonical, extent)  # no flip: input already canonical
    flip_axes = [axis for axis, flip in enumerate(orient.flips) if flip]
    pipeline = Pipeline(batch_size=1, num_threads=settings.num_threads, device_id=None,
                        exec_dynamic=True, prefetch_queue_depth=1)
    with pipeline:
        data = fn.external_source(name="volume", layout="DHWC", dtype=types.INT16, ndim=4,
                                  no_copy=True)
        if case == "dali_fn_flip":
            data = fn.flip(data, depthwise=int(0 in flip_axes), vertical=int(1 in flip_axes),
                           horizontal=int(2 in flip_axes))
        resized = fn.resize(
            data, size=extent.astype(float).tolist(), roi_start=roi_start.tolist(),
            roi_end=roi_end.tolist(), antialias=False, subpixel_scale=False, dtype=types.FLOAT,
        )
        # The engine's window and padding, so the cases differ only in where the flips are.
        low, high = settings.hu_window
        windowed = (dmath.clamp(resized, low, high) - low) * (1.0 / (high - low))
        pipeline.set_outputs(fn.pad(windowed, axes=(0, 1, 2), shape=(1, 1, 1),
                                    align=(settings.grid_multiple,) * 3, fill_value=0.0))
    pipeline.build()

    def run():
        if case == "numpy_copy_flip":
            source = np.ascontiguousarray(np.flip(volume.hu, flip_axes))[..., None]
        else:
            source = volume.hu[..., None]
        (batch,) = pipeline.run(volume=[source])
        output = np.array(batch[0])[..., 0]
        del batch
        release_free_heap()  # as the engine does after every run
        return output

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(400, 512, 512))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", choices=CASES, help="run one case in this process")
    args = parser.parse_args()
    shape = tuple(args.shape)
    if args.case:
        print(json.dumps(run_case(args.case, shape, args.repeats)))
        return
    root = Path(__file__).resolve().parents[1]
    records = []
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, "--repeats", str(args.repeats),
                   "--shape", *map(str, shape)]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
        record = json.loads(done.stdout.strip().splitlines()[-1])
        records.append(record)
        print(json.dumps(record))
    print(f"\n{'case':<17} {'first s':>8} {'median s':>9} {'best s':>8} {'peak RSS MB':>12}"
          f" {'over start MB':>14}")
    for r in records:
        print(f"{r['case']:<17} {r['first_s']:>8.2f} {r['median_s']:>9.2f} {r['best_s']:>8.2f} "
              f"{r['peak_rss_mb']:>12.0f} {r['peak_over_before_mb']:>14.0f}")


if __name__ == "__main__":
    main()
