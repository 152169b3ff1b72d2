"""``vcfscreen screen`` time and peak memory per 400-slice study, against the whole-grid baseline.

    .venv/bin/python benchmarks/bench_screen.py [--studies 5] [--slices 400]

The studies are clinical-size phantoms (512x512, ``--slices`` axial images, plus the extra
series a clinical study carries), generated once into ``--data`` (the same folder as
``bench_decode_preprocess.py`` uses). Two runs, each in its own process so that its peak
resident memory (VmHWM) is its own, on the same studies, one study at a time, as the
``screen`` command does it (load, select, DALI, ONNX Runtime, post-process):

* **whole grid** (baseline): the segmenter over the whole model grid (``models.spine_roi_mm=0``);
* **spine region** (default): the segmenter over the region around the spine.

Times exclude imports and the one-time model and pipeline build. Targets (issue 4): median
<= 20 s per study, peak memory <= 4 GiB. Figures are printed and written to
``benchmarks/results/screen.json``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_decode_preprocess import RESULTS, generate, peak_rss_mb, study_dirs

GIB = 1024.0


def child(roi_mm: float, data: Path) -> None:
    from engine.screen import Screener
    from engine.settings import Settings

    settings = Settings()
    settings = settings.model_copy(update={"models": settings.models.model_copy(update={"spine_roi_mm": roi_mm})})
    screener = Screener(settings)
    seconds, statuses = [], []
    for folder in study_dirs(data):
        start = time.perf_counter()
        statuses.append(screener.screen(folder).result.status)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "statuses": statuses, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--seed", type=int, default=9100)
    parser.add_argument("--data", type=Path, default=Path("/tmp/vcfscreen-bench-decode"))
    parser.add_argument("--child-roi", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_roi is not None:
        child(args.child_roi, args.data)
        return

    generate(args.data, args.studies, args.slices, args.seed)
    n = len(study_dirs(args.data))
    from engine.settings import Settings

    default_roi = Settings().models.spine_roi_mm
    runs = {}
    for name, roi in (("whole grid (baseline)", 0.0), ("spine region (default)", default_roi)):
        print(f"screening {n} studies: {name}", flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--child-roi", str(roi), "--data", str(args.data)],
            capture_output=True, text=True, check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if out.returncode != 0:
            sys.exit(f"the {name} run failed:\n{out.stderr[-3000:]}")
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1]) | {"spine_roi_mm": roi}

    print(f"\nscreen, {n} studies of 512x512x{args.slices} (+ extra series), {os.cpu_count()} cores, one at a time")
    print(f"{'run':<26}{'median s':>10}{'p95 s':>9}{'peak RSS GiB':>14}{'x baseline':>12}  statuses")
    summary, base = {}, None
    for name, run in runs.items():
        seconds = sorted(run["seconds"])
        median = seconds[len(seconds) // 2]
        p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
        base = base or median
        statuses = {s: run["statuses"].count(s) for s in sorted(set(run["statuses"]))}
        summary[name] = {"median_s": median, "p95_s": p95, "peak_rss_gib": run["peak_rss_mb"] / GIB,
                         "speedup": base / median, "spine_roi_mm": run["spine_roi_mm"], "statuses": statuses,
                         "seconds": run["seconds"]}
        print(f"{name:<26}{median:>10.2f}{p95:>9.2f}{run['peak_rss_mb'] / GIB:>14.2f}{base / median:>11.2f}x  "
              + ", ".join(f"{k} {v}" for k, v in statuses.items()))
    print("targets: median <= 20 s, peak <= 4 GiB")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = RESULTS / "screen.json"
    out_path.write_text(json.dumps({"studies": n, "slices": args.slices, "cores": os.cpu_count(), "runs": summary},
                                   indent=2) + "\n")
    print(f"\nwrote {out_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
