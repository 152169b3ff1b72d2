"""Decode + preprocess throughput: vcfscreen's loader and DALI pipeline vs a naive baseline.

    .venv/bin/python benchmarks/bench_decode_preprocess.py [--studies 3] [--slices 400]

Both paths read the same phantom studies (generated once into ``--data``, 512x512 matrix,
``--slices`` axial images plus the extra non-eligible series a clinical study carries) and
produce a volume at the model spacing (2 mm):

* **naive baseline**: ``pydicom.dcmread`` of every file of the largest series, HU as float64,
  ``np.stack``, ``scipy.ndimage.zoom(order=1)`` to the model spacing; one study at a time.
* **vcfscreen, sequential**: ``engine.dicom.load_study`` (header scan, series selection,
  threaded decode into one int16 volume) then the DALI ``Preprocessor`` (built once).
* **vcfscreen, overlapped**: the same, with the next study decoded while DALI resamples the
  current one (what the streaming worker does).

Each path runs in its own process, so its peak resident memory (VmHWM) is its own; times
exclude imports and the one-time pipeline build. Results go to
``benchmarks/results/decode_preprocess.json``. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def study_dirs(data: Path) -> list[Path]:
    return sorted(p for p in data.iterdir() if p.is_dir())


def run_naive(dirs: list[Path], spacing: tuple[float, float, float]) -> list[float]:
    import numpy as np
    import pydicom
    from scipy import ndimage

    times = []
    for folder in dirs:
        start = time.perf_counter()
        datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
        by_series: dict[str, list] = {}
        for ds in datasets:
            by_series.setdefault(ds.SeriesInstanceUID, []).append(ds)
        series = max(by_series.values(), key=len)
        series.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
        hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in series])
        z = abs(float(series[1].ImagePositionPatient[2]) - float(series[0].ImagePositionPatient[2]))
        row, col = (float(v) for v in series[0].PixelSpacing)
        factors = (z / spacing[0], row / spacing[1], col / spacing[2])
        out = ndimage.zoom(hu, factors, order=1)
        out = np.clip((out + 200.0) / 1400.0, 0.0, 1.0)
        times.append(time.perf_counter() - start)
        del datasets, series, hu, out
    return times


def run_engine(dirs: list[Path], overlapped: bool) -> list[float]:
    from engine.dicom import load_study
    from engine.preprocess import Preprocessor
    from engine.settings import Settings

    settings = Settings()
    preprocessor = Preprocessor(settings.preprocess)
    times = []
    if not overlapped:
        for folder in dirs:
            start = time.perf_counter()
            volume = load_study(folder, settings.selection).volume
            preprocessor([volume])
            times.append(time.perf_counter() - start)
            del volume
        return times
    # Decode study i+1 in a thread while DALI resamples study i: the stages overlap.
    with ThreadPoolExecutor(max_workers=1) as pool:
        start = time.perf_counter()
        pending = pool.submit(load_study, dirs[0], settings.selection)
        for i in range(len(dirs)):
            volume = pending.result().volume
            pending = pool.submit(load_study, dirs[i + 1], settings.selection) if i + 1 < len(dirs) else None
            preprocessor([volume])
            del volume
            now = time.perf_counter()
            times.append(now - start)
            start = now
    return times


def child(mode: str, data: Path) -> None:
    dirs = study_dirs(data)
    if mode == "naive":
        times = run_naive(dirs, (2.0, 2.0, 2.0))
    else:
        times = run_engine(dirs, overlapped=(mode == "overlapped"))
    print(json.dumps({"mode": mode, "seconds": times, "peak_rss_mb": peak_rss_mb()}))


def generate(data: Path, studies: int, slices: int, seed: int) -> None:
    from engine.phantom import PhantomConfig, generate_study, write_study

    data.mkdir(parents=True, exist_ok=True)
    if len(study_dirs(data)) >= studies:
        return
    config = PhantomConfig(slices_min=slices, slices_max=slices)
    for k in range(studies):
        t0 = time.perf_counter()
        write_study(generate_study(seed + k, config), data)
        print(f"generated study {k + 1}/{studies} in {time.perf_counter() - t0:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--seed", type=int, default=9100)
    parser.add_argument("--data", type=Path, default=Path("/tmp/vcfscreen-bench-decode"))
    parser.add_argument("--child", choices=["naive", "sequential", "overlapped"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
        return

    generate(args.data, args.studies, args.slices, args.seed)
    # Warm the page cache for both paths alike (the files were just written, but be sure).
    for folder in study_dirs(args.data):
        for f in folder.glob("*.dcm"):
            f.read_bytes()
    runs = {}
    for mode in ("naive", "sequential", "overlapped"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--data", str(args.data)],
            capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    n = len(study_dirs(args.data))
    print(f"\ndecode + preprocess, {n} studies of 512x512x{args.slices} (+ extra series), {os.cpu_count()} cores")
    print(f"{'path':<28}{'s/study (median)':>18}{'studies/min':>14}{'peak RSS MB':>14}{'x baseline':>12}")
    base = None
    summary = {}
    for mode, label in (("naive", "naive (pydicom + zoom)"), ("sequential", "vcfscreen sequential"),
                        ("overlapped", "vcfscreen overlapped")):
        seconds = runs[mode]["seconds"]
        median = sorted(seconds)[len(seconds) // 2]
        per_min = 60.0 * len(seconds) / sum(seconds)
        base = base or per_min
        summary[mode] = {"median_s": median, "studies_per_min": per_min, "peak_rss_mb": runs[mode]["peak_rss_mb"],
                         "speedup": per_min / base, "seconds": seconds}
        print(f"{label:<28}{median:>18.2f}{per_min:>14.1f}{runs[mode]['peak_rss_mb']:>14.0f}{per_min / base:>11.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "decode_preprocess.json"
    out.write_text(json.dumps({"studies": n, "slices": args.slices, "cores": os.cpu_count(), "runs": summary}, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
