"""``make demo``: the whole flow on this machine, from phantom CTs in a PACS to findings on Kafka.

1. brings up the local stack (Kafka, Orthanc, Prometheus, and Triton) with stack/stackctl.py;
2. writes phantom TAP CT studies (``--studies``, fast clinical-like) and stores them in
   Orthanc over STOW-RS;
3. starts a worker (``vcfscreen serve``, metrics on the port Prometheus scrapes), publishes
   one DICOMweb StudyEvent per study (plus one deliberately malformed event, to show the
   dead-letter path) and follows the results topic live;
4. stops the worker (SIGTERM: it drains and commits) and prints throughput, per-stage
   latency, findings by grade and dead letters, and where to look. The stack stays up.

The inference backend is the in-process ONNX Runtime unless ``VCF_MODELS__BACKEND=triton``
(or ``--backend triton``) asks for Triton.

    python -m streaming.demo [--studies 24] [--seed 7] [--backend onnxruntime|triton]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from engine.settings import InferenceBackend, Settings
from stack import stackctl
from streaming import demo_report
from streaming.procs import TopicReader, WorkerProcess, worker_env

ROOT = Path(__file__).resolve().parent.parent
POISON = (b"demo-poison", b'{"study_url": "this is not a study event"')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=24, help="phantom studies to screen (default 24)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the phantom studies")
    parser.add_argument("--backend", choices=[b.value for b in InferenceBackend], default=None,
                        help="inference backend (default: VCF_MODELS__BACKEND, else onnxruntime)")
    parser.add_argument("--services", default="kafka,orthanc,prometheus,triton",
                        help="stack services to bring up (Triton is optional with the onnxruntime backend)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo", help="phantoms, logs, key images, results")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up waiting for results after this")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    return args


def bring_up(console: Console, settings: Settings, services: list[str], backend: InferenceBackend) -> None:
    required = [s for s in services if s != "triton"]
    try:
        stackctl.up(required)
    except stackctl.StackError as exc:
        # A broker that answers is enough, whatever the controller's health probe says.
        failed = {line.split(":", 1)[0] for line in str(exc).splitlines()} & set(stackctl.SERVICES)
        if failed != {"kafka"} or not _broker_answers(settings):
            raise
        console.print(f"[yellow]the stack controller reports Kafka unhealthy, but the broker at "
                      f"{settings.kafka.bootstrap_servers} answers: going on[/]")
        stackctl.up([s for s in required if s != "kafka"])
    if "triton" in services:
        try:
            stackctl.up(["triton"])
        except stackctl.StackError as exc:
            if backend == InferenceBackend.TRITON:
                raise
            console.print(f"[yellow]Triton did not start ({exc}); the demo goes on with the in-process backend[/]")


def _broker_answers(settings: Settings) -> bool:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers.split(","))
    except (KafkaError, OSError):
        return False
    try:
        consumer.topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        consumer.close()


def _make_study(args: tuple[int, str]) -> str:
    from engine.phantom import PhantomConfig, generate_study, write_study

    seed, folder = args
    return str(write_study(generate_study(seed, PhantomConfig.fast()), folder))


def make_phantoms(console: Console, folder: Path, count: int, seed: int) -> list[Path]:
    """The demo studies, generated once per (count, seed) and reused by later runs."""
    from engine.cli.phantom_cmd import study_seed

    stamp = folder / "complete.json"
    if stamp.exists():
        listed = [Path(p) for p in json.loads(stamp.read_text())]
        if all(p.is_dir() for p in listed):
            console.print(f"reusing {len(listed)} phantom studies in {folder}")
            return listed
    folder.mkdir(parents=True, exist_ok=True)
    seeds = [(study_seed(seed, i), str(folder)) for i in range(count)]
    written: list[Path] = []
    with _bar(console) as progress, ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        task = progress.add_task("writing phantom CT studies", total=count, note="")
        for path in pool.map(_make_study, seeds):
            written.append(Path(path))
            progress.advance(task)
    stamp.write_text(json.dumps([str(p) for p in written]))
    return written


def store(console: Console, settings: Settings, folders: list[Path]) -> list[str]:
    """STOW-RS every study not yet in the PACS; returns the StudyInstanceUIDs."""
    from streaming.dicomweb import DicomWeb
    from streaming.submit import store_study_folder, study_uid_of_folder

    web = DicomWeb(settings.pacs)
    uids = []
    with _bar(console) as progress:
        task = progress.add_task("storing in Orthanc (STOW-RS)", total=len(folders), note="")
        for folder in folders:
            uid = study_uid_of_folder(folder)
            if not web.search_studies(StudyInstanceUID=uid):
                store_study_folder(web, folder)
            uids.append(uid)
            progress.advance(task)
    return uids


def _bar(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console)


def follow(console: Console, settings: Settings, uids: list[str], since_ms: int, worker: WorkerProcess,
           timeout_s: float) -> tuple[list, list]:
    """Results and dead letters of this run, with a live progress bar."""
    wanted = set(uids)
    results_reader = TopicReader(settings.kafka, settings.kafka.results_topic)
    dlq_reader = TopicReader(settings.kafka, settings.kafka.dlq_topic)
    results: dict[str, object] = {}
    letters: list = []
    deadline = time.monotonic() + timeout_s
    try:
        with _bar(console) as progress:
            task = progress.add_task("screening (worker)", total=len(uids), note="")
            while set(results) < wanted and time.monotonic() < deadline:
                if not worker.alive():
                    raise RuntimeError(f"the worker exited:\n{worker.log_text()[-3000:]}")
                for record in results_reader.poll(300):
                    uid = record.key.decode() if record.key else ""
                    if record.timestamp >= since_ms and uid in wanted and uid not in results:
                        results[uid] = record
                letters += [r for r in dlq_reader.poll(50) if r.timestamp >= since_ms]
                flagged = sum(json.loads(r.value).get("flag", False) for r in results.values())
                progress.update(task, completed=len(results),
                                note=f"{flagged} flagged, {len(letters)} dead letters")
            for _ in range(4):  # dead letters written just before the last result
                letters += [r for r in dlq_reader.poll(250) if r.timestamp >= since_ms]
    finally:
        results_reader.close()
        dlq_reader.close()
    return list(results.values()), letters


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    settings = Settings()
    backend = InferenceBackend(args.backend) if args.backend else settings.models.backend
    settings.models = settings.models.model_copy(update={"backend": backend})
    why = "--backend" if args.backend else ("VCF_MODELS__BACKEND" if "VCF_MODELS__BACKEND" in os.environ else "the default")
    console.rule("vcfscreen demo")
    console.print(f"inference backend: [bold]{backend.value}[/] ({why}; "
                  + ("in-process ONNX Runtime; set VCF_MODELS__BACKEND=triton to use Triton)"
                     if backend == InferenceBackend.ONNXRUNTIME else f"Triton at {settings.triton.url})"))
    models = [settings.models.dir / settings.models.segmentation_file, settings.models.dir / settings.models.classifier_file]
    missing = [str(m) for m in models if not m.exists()]
    if missing and backend == InferenceBackend.ONNXRUNTIME:
        console.print(f"[red]the models are missing: {', '.join(missing)}; run `vcfscreen train` or set VCF_MODELS__DIR[/]")
        return 2
    bring_up(console, settings, [s for s in args.services.split(",") if s], backend)

    workdir = args.workdir.resolve()
    folders = make_phantoms(console, workdir / f"phantoms-seed{args.seed}-n{args.studies}", args.studies, args.seed)
    uids = store(console, settings, folders)

    from streaming.kafka_clients import make_producer

    producer = make_producer(settings.kafka)
    producer.partitions_for(settings.kafka.studies_topic)  # creates the topic before the worker subscribes
    key_images = workdir / "key_images"
    env = worker_env(settings.kafka, VCF_MODELS__BACKEND=backend.value, VCF_WORKER__KEY_IMAGES_DIR=str(key_images),
                     VCF_WORKER__METRICS_PORT=str(stackctl.WORKER_METRICS_PORT), VCF_WORKER__WORKER_ID="demo-worker")
    worker = WorkerProcess(env, workdir / "worker.log").start()
    console.print(f"worker started (pid {worker.pid}, log {worker.log_path}); waiting for its partitions")
    started = time.time()
    try:
        # A worker assigned nothing at first rejoins by itself after 20 s (Worker._rejoin_if_idle).
        worker.wait_assigned(120)
        since_ms = int(time.time() * 1000)
        from streaming.events import event_for_dicomweb
        from streaming.submit import Publisher, RateLimiter

        publisher = Publisher(producer, settings.kafka.studies_topic, RateLimiter(settings.pacs.max_requests_per_s))
        for uid in uids:
            publisher.publish(event_for_dicomweb(settings.pacs.dicomweb_url, uid))
        publisher.publish_raw(*POISON)
        publisher.wait()
        console.print(f"published {len(uids)} study events (DICOMweb) and 1 malformed event to "
                      f"{settings.kafka.studies_topic} at ≤{settings.pacs.max_requests_per_s:g}/s")
        first_event = time.time()
        results, letters = follow(console, settings, uids, since_ms, worker, args.timeout)
        wall = time.time() - first_event
    finally:
        code = worker.stop()
        producer.close(timeout=10)
    console.print(f"worker stopped (exit code {code}) after {time.time() - started:.0f} s")
    demo_report.write_results(results, workdir / "results.jsonl")
    demo_report.print_summary(console, settings, results, letters, len(uids), wall, key_images, workdir)
    if len(results) < len(uids):
        console.print(f"[red]{len(uids) - len(results)} studies had no result within {args.timeout:.0f} s[/]")
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
