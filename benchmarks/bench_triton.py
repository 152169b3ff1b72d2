"""Screening throughput and latency through Triton vs the in-process backend, on the same studies.

    python3 -m stack.stackctl up triton            # or: --start-triton below
    .venv/bin/python benchmarks/bench_triton.py [--studies 6] [--concurrency 1] [--start-triton]

Both paths screen the same phantom studies (``PhantomConfig.fast()``, generated in memory
once), from the HU volume to the ScreeningResult (DALI preprocessing, inference, levels,
morphometry, grading):

* **in-process**: :class:`engine.infer.onnx_backend.OnnxBackend` (ONNX Runtime in this process).
* **Triton**: :class:`engine.infer.triton_backend.TritonBackend`, one ``vcf_pipeline`` request
  per study (volume through system shared memory when the server is local).

Each path screens one warm-up study first (not timed). At concurrency 1 the studies go through
the two paths alternately (study 1: in-process then Triton, study 2: Triton then in-process...),
so that the load of other processes on a shared machine falls on both alike; studies per
minute is then 60 x studies / the path's summed latency. Printed: studies per minute, p50 / p95
study latency, the mean time per stage, and Triton's own per-model figures from its metrics
endpoint over the timed run (requests, executions, mean queue and compute time per request:
``nv_inference_request_success``, ``nv_inference_exec_count``, ``nv_inference_queue_duration_us``,
``nv_inference_compute_infer_duration_us``). The models are those of ``VCF_MODELS__DIR`` (or
the bundled ones); the server must serve the same files (the client checks the versions).
Results also go to ``benchmarks/results/triton.json``. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
METRICS = (
    "nv_inference_request_success",
    "nv_inference_exec_count",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_output_duration_us",
)
_LINE = re.compile(r'^(\w+)\{model="([^"]+)",version="[^"]*"\} ([0-9.eE+-]+)$')


def scrape(url: str) -> dict[str, dict[str, float]]:
    """Triton's per-model counters: model -> metric -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, dict[str, float]] = defaultdict(dict)
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and match.group(1) in METRICS:
            values[match.group(2)][match.group(1)] = float(match.group(3))
    return values


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Tally:
    """Latencies, statuses and stage times of one path."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: list[str] = []
        self.stages: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()

    def screen(self, screener, volume) -> None:
        start = time.perf_counter()
        try:
            result = screener.screen_volume(volume).result
            status, timings = result.status, result.timings_ms
        except Exception as exc:  # noqa: BLE001 - counted as Screener.screen would report it
            status, timings = f"error ({type(exc).__name__})", {}
        elapsed = time.perf_counter() - start
        with self.lock:
            self.latencies.append(elapsed)
            self.statuses.append(status)
            for stage, ms in timings.items():
                self.stages[stage].append(ms)

    def summary(self, busy_s: float) -> dict:
        return {
            "studies": len(self.latencies),
            "statuses": {s: self.statuses.count(s) for s in sorted(set(self.statuses))},
            "studies_per_minute": 60.0 * len(self.latencies) / busy_s,
            "p50_s": percentile(self.latencies, 0.50),
            "p95_s": percentile(self.latencies, 0.95),
            "mean_stage_ms": {k: statistics.fmean(v) for k, v in sorted(self.stages.items())},
        }


def warm_up(screeners, volume) -> None:
    for screener in screeners:  # sessions, arenas, shared-memory regions; not timed
        Tally().screen(screener, volume)


def interleaved(paths: dict[str, object], volumes) -> dict[str, dict]:
    """Concurrency 1: each study through every path in turn (order alternating per study), so
    that load from other processes on the machine falls on both paths alike."""
    tallies = {name: Tally() for name in paths}
    names = list(paths)
    for i, volume in enumerate(volumes):
        for name in names if i % 2 == 0 else names[::-1]:
            tallies[name].screen(paths[name], volume)
    return {name: t.summary(sum(t.latencies)) for name, t in tallies.items()}


def threaded(screeners, volumes) -> dict:
    """Concurrency N: N screeners of one path in threads, sharing a queue of studies."""
    tally, queue, lock = Tally(), list(range(len(volumes))), threading.Lock()

    def worker(screener) -> None:
        while True:
            with lock:
                if not queue:
                    return
                index = queue.pop(0)
            tally.screen(screener, volumes[index])

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(s,)) for s in screeners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally.summary(time.perf_counter() - start)


def triton_table(before: dict, after: dict) -> dict[str, dict[str, float]]:
    table = {}
    for model in sorted(after):
        delta = {m: after[model].get(m, 0.0) - before.get(model, {}).get(m, 0.0) for m in METRICS}
        requests = delta["nv_inference_request_success"]
        if requests <= 0:
            continue
        table[model] = {
            "requests": requests,
            "executions": delta["nv_inference_exec_count"],
            "queue_ms_per_request": delta["nv_inference_queue_duration_us"] / requests / 1000.0,
            "compute_ms_per_request": delta["nv_inference_compute_infer_duration_us"] / requests / 1000.0,
            "io_ms_per_request": (delta["nv_inference_compute_input_duration_us"] + delta["nv_inference_compute_output_duration_us"]) / requests / 1000.0,
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=6)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1, help="Screeners in parallel threads (each path).")
    parser.add_argument("--start-triton", action="store_true", help="Bring Triton up with the stack controller, and down after.")
    args = parser.parse_args()

    from engine.infer.onnx_backend import OnnxBackend
    from engine.infer.triton_backend import TritonBackend
    from engine.phantom import PhantomConfig, generate_study
    from engine.screen import Screener
    from engine.settings import Settings
    from stack import stackctl

    started = stackctl.up(["triton"]) if args.start_triton else []
    try:
        settings = Settings()
        print(f"generating {args.studies} phantom studies (PhantomConfig.fast(), seeds {args.seed}..)", flush=True)
        volumes = [generate_study(args.seed + i, PhantomConfig.fast()).volume for i in range(args.studies)]

        def local():
            return Screener(settings, backend=OnnxBackend(settings.models, settings.preprocess))

        def served():
            return Screener(settings, backend=TritonBackend(settings.triton, settings.models))

        probe = TritonBackend(settings.triton, settings.models)
        versions, transport = probe.versions, probe.transport
        probe.close()
        print(f"models {versions}; Triton tensors via {transport}", flush=True)
        n = args.concurrency
        paths = {"in-process": [local() for _ in range(n)], "triton": [served() for _ in range(n)]}
        for screeners in paths.values():
            warm_up(screeners, volumes[0])
        before = scrape(settings.triton.metrics_url)
        if n == 1:
            results = interleaved({name: screeners[0] for name, screeners in paths.items()}, volumes)
        else:
            results = {name: threaded(screeners, volumes) for name, screeners in paths.items()}
        after = scrape(settings.triton.metrics_url)
        for screener in paths["triton"]:
            screener.backend.close()
        per_model = triton_table(before, after)
    finally:
        if started:
            stackctl.down(started)

    print(f"\n{args.studies} studies, concurrency {args.concurrency}")
    print(f"{'path':<12} {'studies/min':>11} {'p50 s':>7} {'p95 s':>7}  mean stage ms")
    for name, r in results.items():
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["mean_stage_ms"].items())
        print(f"{name:<12} {r['studies_per_minute']:>11.2f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f}  {stages}  {r['statuses']}")
    print("\nTriton per model over the timed run (from its /metrics, warm-up excluded)")
    print(f"{'model':<14} {'requests':>8} {'execs':>6} {'queue ms/req':>13} {'compute ms/req':>15} {'in+out ms/req':>14}")
    for model, row in per_model.items():
        print(
            f"{model:<14} {row['requests']:>8.0f} {row['executions']:>6.0f} {row['queue_ms_per_request']:>13.1f} "
            f"{row['compute_ms_per_request']:>15.1f} {row['io_ms_per_request']:>14.1f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"studies": args.studies, "concurrency": args.concurrency, "versions": versions, "transport": transport,
              "paths": results, "triton_models": per_model}
    (RESULTS / "triton.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
