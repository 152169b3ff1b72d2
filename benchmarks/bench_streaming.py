"""Streaming throughput and latency, 1 and 2 workers, against a sequential baseline (needs Kafka).

The same as ``vcfscreen bench`` (the figures and the plot go to benchmarks/results/):

    python3 -m stack.stackctl up kafka          # orthanc too with --source dicomweb
    .venv/bin/python benchmarks/bench_streaming.py --studies 12 --workers 1,2

The naive baseline screens the studies one at a time in this process, nothing overlapping
(every file read whole by pydicom, the segmenter over the whole model grid); a second row runs
vcfscreen's core one study at a time; each streaming run publishes one StudyEvent per study
once its ``vcfscreen serve`` workers hold their partitions, and ends at the last result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.screen_cmd import discover_studies
from engine.settings import Settings
from streaming.bench import run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=12, help="studies per run (fast phantoms unless --folder)")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--folder", type=Path, default=None, help="a folder of study folders to use instead")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--source", default="file", choices=["file", "dicomweb"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    folders = discover_studies([args.folder]) if args.folder else None
    run_bench(Settings(), studies=args.studies, seed=args.seed, folders=folders,
              worker_counts=[int(w) for w in args.workers.split(",")], source=args.source, out=args.out)


if __name__ == "__main__":
    main()
