"""Phantom generation throughput: studies per minute at 400 slices of 512 x 512.

Measures, for a few seeds, the in-memory generation alone (``generate_study``) and the
generation plus writing every DICOM file (``write_study``, explicit VR little endian by
default), and prints per-study seconds and studies per minute for both. Run:

    .venv/bin/python benchmarks/bench_phantom.py --studies 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from engine.phantom import PhantomConfig, generate_study, write_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=3, help="studies to time (each a different seed)")
    parser.add_argument("--slices", type=int, default=400, help="slices of each screening series")
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--transfer-syntax", default="explicit", choices=["explicit", "rle", "jpegls", "jpeg2000"])
    args = parser.parse_args()

    config = PhantomConfig(matrix=args.matrix, slices_min=args.slices, slices_max=args.slices,
                           spacing_choices_mm=(1.5,), partial_coverage_probability=0.0)
    generate, write, files = [], [], []
    out_root = Path(tempfile.mkdtemp(prefix="vcf-bench-phantom-"))
    try:
        for k in range(args.studies):
            start = time.perf_counter()
            study = generate_study(args.seed + k, config)
            generated = time.perf_counter()
            folder = write_study(study, out_root, transfer_syntax=args.transfer_syntax)
            written = time.perf_counter()
            generate.append(generated - start)
            write.append(written - generated)
            files.append(len(list(folder.glob("*.dcm"))))
            print(f"seed {args.seed + k}: {study.volume.shape[0]} slices x {args.matrix}^2, "
                  f"generate {generate[-1]:.1f} s, write {write[-1]:.1f} s ({files[-1]} files, "
                  f"{len(study.series)} series)")
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    gen_s = statistics.mean(generate)
    total_s = statistics.mean(g + w for g, w in zip(generate, write))
    print(f"generation only      : {gen_s:.1f} s/study = {60.0 / gen_s:.1f} studies/min")
    print(f"generation + writing : {total_s:.1f} s/study = {60.0 / total_s:.1f} studies/min "
          f"({args.transfer_syntax}, {statistics.mean(files):.0f} files/study)")


if __name__ == "__main__":
    main()
