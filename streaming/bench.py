"""``vcfscreen bench``: end-to-end streaming throughput against a sequential baseline, in one run.

On the same studies:

- **baseline (naive sequential)**: one study at a time in this process, nothing overlapping:
  every file read whole with pydicom, then the same models and post-processing, the
  segmenter run over the whole model grid (what a straightforward script does);
- **vcfscreen core, sequential**: the screening core one study at a time (header scan and
  direct pixel reads, the segmenter on the region around the spine): what the core alone
  buys, before any overlap;
- **streaming, N workers**: ``vcfscreen serve`` processes in one consumer group; events are
  published once every worker holds its partitions (start-up is not timed), and the run
  ends when the last result is on the results topic.

Throughput is studies per hour over the wall time from the first event to the last result
(Kafka record timestamps). Latency is per study: for the baseline its screening time, for
the workers the time from intake to the result record (the ``vcfscreen-latency-ms``
header: the time a study spends in a worker, queueing between stages included, the backlog
on the topic excluded). The figures go to ``<out>/bench_streaming.json`` and a plot to
``<out>/bench_streaming.png``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from engine.settings import Settings
from streaming.sinks import LATENCY_HEADER, STAGES_HEADER, header_map

STAGE_ORDER = ("fetch", "load", "preprocess", "infer", "postprocess", "produce", "queued")


def percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def make_phantoms(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` clinical-like fast phantoms (128 matrix, 2.5-3 mm slices, whole trunk)."""
    from engine.cli.phantom_cmd import study_seed
    from engine.phantom import PhantomConfig, generate_study, write_study

    config = PhantomConfig.fast()
    return [Path(write_study(generate_study(study_seed(seed, i), config), folder)) for i in range(count)]


def naive_read(folder: Path) -> list:
    """Every DICOM file of the study read whole by pydicom (pixels included), as a simple script would."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            datasets.append(pydicom.dcmread(path))
        except InvalidDicomError:
            continue  # truth.json, labels.npz and the like
    return datasets


def run_baseline(settings: Settings, folders: list[Path], source: str) -> dict:
    """The naive sequential baseline: one study at a time, nothing overlapping; every file read
    whole with pydicom, the same models run over the whole model grid (no spine region)."""
    naive = settings.model_copy(update={"models": settings.models.model_copy(update={"spine_roi_mm": 0.0})})
    return _run_sequential("baseline (naive sequential)", naive, folders, source, naive_read)


def run_core_sequential(settings: Settings, folders: list[Path], source: str) -> dict:
    """vcfscreen's screening core one study at a time (its loader, the spine region), nothing
    overlapping: what the streaming runs add beyond it is the overlap of stages and workers."""
    return _run_sequential("vcfscreen core, sequential", settings, folders, source, lambda folder: folder)


def _run_sequential(name: str, settings: Settings, folders: list[Path], source: str, read) -> dict:
    from engine.screen import Screener
    from streaming.dicomweb import DicomWeb
    from streaming.submit import study_uid_of_folder

    screener = Screener(settings)
    web = DicomWeb(settings.pacs) if source == "dicomweb" else None
    latencies, statuses = [], []
    start = time.perf_counter()
    for folder in folders:
        began = time.perf_counter()
        study = web.retrieve_study(study_uid_of_folder(folder)) if web else read(folder)
        statuses.append(screener.screen(study).result.status)
        latencies.append(time.perf_counter() - began)
    wall = time.perf_counter() - start
    return _figures(name, len(folders), wall, latencies, {}, statuses)


def run_streaming(settings: Settings, folders: list[Path], uids: list[str], source: str, workers: int,
                  logs: Path) -> dict:
    from streaming.events import event_for_dicomweb, event_for_folder
    from streaming.kafka_clients import make_producer
    from streaming.procs import TopicReader, WorkerProcess, delete_topics, worker_env
    from streaming.submit import Publisher

    run = uuid.uuid4().hex[:8]
    kafka = settings.kafka.model_copy(update={
        "studies_topic": f"bench-{run}-studies", "results_topic": f"bench-{run}-results",
        "dlq_topic": f"bench-{run}-dlq", "group_id": f"bench-{run}"})
    # Create the studies topic before the workers join, so they split its partitions at once.
    producer = make_producer(kafka)
    partitions = len(producer.partitions_for(kafka.studies_topic) or ())
    # ONNX Runtime threads per worker: as configured, else the cores shared out between the workers.
    threads = settings.models.intra_op_threads or max(1, (os.cpu_count() or 1) // workers)
    env = worker_env(kafka, VCF_WORKER__METRICS_PORT="0", VCF_MODELS__INTRA_OP_THREADS=str(threads),
                     VCF_MODELS__BACKEND=settings.models.backend.value, VCF_MODELS__DIR=str(settings.models.dir))
    procs = [WorkerProcess(env, logs / f"bench-{run}-w{i}.log").start() for i in range(workers)]
    try:
        _settle(procs, partitions)
        publisher = Publisher(producer, kafka.studies_topic)
        for folder, uid in zip(folders, uids, strict=True):
            event = (event_for_dicomweb(settings.pacs.dicomweb_url, uid) if source == "dicomweb"
                     else event_for_folder(folder, uid))
            publisher.publish(event)
        publisher.wait()
        reader = TopicReader(kafka, kafka.results_topic)
        events = TopicReader(kafka, kafka.studies_topic)
        wanted = set(uids)
        reader.read_until(lambda rs: wanted <= {r.key.decode() for r in rs}, timeout_s=3600)
        events.read_until(lambda rs: len(rs) >= len(uids), timeout_s=60)
        results, submitted = list(reader.records), list(events.records)
        reader.close()
        events.close()
    finally:
        for proc in procs:
            proc.stop()
        producer.close(timeout=10)
        delete_topics(kafka, [kafka.studies_topic, kafka.results_topic, kafka.dlq_topic])
    first = min(r.timestamp for r in submitted)
    by_key = {}
    for record in results:
        by_key.setdefault(record.key.decode(), record)  # the first result of each study
    last = max(r.timestamp for r in by_key.values())
    latencies, stages, statuses = [], {}, []
    for record in by_key.values():
        headers = header_map(record.headers)
        latencies.append(float(headers[LATENCY_HEADER]) / 1000.0)
        for stage, ms in json.loads(headers[STAGES_HEADER]).items():
            stages.setdefault(stage, []).append(ms / 1000.0)
        statuses.append(json.loads(record.value)["status"])
    name = f"streaming, {workers} worker{'s' if workers > 1 else ''}"
    figures = _figures(name, len(by_key), (last - first) / 1000.0, latencies, stages, statuses)
    figures.update(workers=workers, intra_op_threads=threads, duplicates=len(results) - len(by_key))
    return figures


def _settle(procs, partitions: int, timeout_s: float = 180.0) -> None:
    """Wait until the workers' latest assignments cover every partition once, each worker holding some."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assignments = [p.assignment() or set() for p in procs]
        union = set().union(*assignments)
        if all(assignments) and len(union) == partitions and sum(len(a) for a in assignments) == partitions:
            return
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"a bench worker exited:\n{proc.log_text()[-3000:]}")
        time.sleep(0.3)
    tails = "\n".join(f"--- worker {k} ---\n{p.log_text()[-1500:]}" for k, p in enumerate(procs))
    raise TimeoutError(f"the bench workers did not settle on the {partitions} partitions in {timeout_s:.0f} s; "
                       f"last assignments {[p.assignment() for p in procs]}\n{tails}")


def _figures(name: str, count: int, wall_s: float, latencies, stages: dict, statuses) -> dict:
    return {
        "name": name,
        "studies": count,
        "wall_s": round(wall_s, 2),
        "studies_per_hour": round(3600.0 * count / wall_s, 1) if wall_s > 0 else None,
        "latency_p50_s": _round(percentile(latencies, 50)),
        "latency_p95_s": _round(percentile(latencies, 95)),
        "stage_p50_s": {s: _round(percentile(stages[s], 50)) for s in STAGE_ORDER if s in stages},
        "stage_p95_s": {s: _round(percentile(stages[s], 95)) for s in STAGE_ORDER if s in stages},
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    names = [r["name"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.bar(names, [r["studies_per_hour"] for r in runs], color=["#888888"] + ["#2b7bb9"] * (len(runs) - 1))
    left.set_ylabel("studies / hour")
    left.set_title("throughput")
    x = np.arange(len(runs))
    right.bar(x - 0.2, [r["latency_p50_s"] for r in runs], 0.4, label="p50")
    right.bar(x + 0.2, [r["latency_p95_s"] for r in runs], 0.4, label="p95")
    right.set_xticks(x, names)
    right.set_ylabel("seconds per study")
    right.set_title("latency (baseline: screening; workers: intake to result)")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"vcfscreen bench: {report['studies']} studies, {report['machine']['cpus']} CPUs, "
                 f"backend {report['backend']}, models {report['models']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_bench(settings: Settings, *, studies: int, seed: int, folders: list[Path] | None, worker_counts: list[int],
              source: str, out: Path) -> dict:
    from rich.console import Console
    from rich.table import Table

    from engine.screen import Screener
    from streaming.dicomweb import DicomWeb
    from streaming.submit import store_study_folder, study_uid_of_folder

    console = Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="vcfscreen-bench-"))
    try:
        if folders is None:
            console.print(f"generating {studies} fast phantom studies (seed {seed})")
            folders = make_phantoms(scratch / "studies", studies, seed)
        folders = folders[:studies]
        uids = [study_uid_of_folder(f) for f in folders]
        if source == "dicomweb":
            console.print(f"storing {len(folders)} studies in the PACS at {settings.pacs.dicomweb_url}")
            web = DicomWeb(settings.pacs)
            for folder in folders:
                store_study_folder(web, folder)
        versions = Screener(settings).pipeline_version
        console.print(f"baseline: {len(folders)} studies one at a time, naive read, whole-grid inference ({versions})")
        runs = [run_baseline(settings, folders, source)]
        console.print("vcfscreen core, one study at a time")
        runs.append(run_core_sequential(settings, folders, source))
        for workers in worker_counts:
            console.print(f"streaming with {workers} worker(s)")
            runs.append(run_streaming(settings, folders, uids, source, workers, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = runs[0]["studies_per_hour"]
    for run in runs:
        run["speedup"] = round(run["studies_per_hour"] / base, 2) if base else None
    report = {
        "studies": len(folders), "source": source, "backend": settings.models.backend.value,
        "models": versions.split("; ", 1)[-1], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "worker_settings": settings.worker.model_dump(mode="json", include={"max_in_flight", "queue_size", "fetch_threads", "infer_threads"}),
        "runs": runs,
    }
    (out / "bench_streaming.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out / "bench_streaming.png")
    table = Table(title=f"vcfscreen bench: {len(folders)} studies ({source}), {os.cpu_count()} CPUs, {report['models']}")
    for column in ("run", "studies/hour", "speed-up", "latency p50 s", "latency p95 s", "statuses"):
        table.add_column(column, justify="left" if column in ("run", "statuses") else "right")
    for run in runs:
        table.add_row(run["name"], f"{run['studies_per_hour']:.0f}", f"{run['speedup']:.2f}x",
                      f"{run['latency_p50_s']:.2f}", f"{run['latency_p95_s']:.2f}",
                      ", ".join(f"{k} {v}" for k, v in run["statuses"].items()))
    console.print(table)
    console.print(f"figures: {out / 'bench_streaming.json'}, plot: {out / 'bench_streaming.png'}")
    return report
