"""``vcfscreen serve`` (the streaming worker), ``vcfscreen submit`` (publish StudyEvents) and
``vcfscreen bench`` (streaming throughput against a sequential baseline).

The streaming layer is imported inside each command, so ``engine`` imports nothing of Kafka.
Exit codes: 0 when the command ran (``serve``: stopped by SIGTERM/SIGINT after draining),
1 when the worker had to stop because its output could not be delivered or the broker is
unreachable, 2 for usage errors.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.config_cmd import load_settings
from engine.cli.screen_cmd import (
    USAGE_ERROR,
    UsageError,
    apply_options,
    build_screener,
    discover_studies,
)
from engine.errors import TransientError, VcfScreenError
from engine.logs import setup_logging
from engine.settings import InferenceBackend

log = logging.getLogger(__name__)

BackendOption = Annotated[InferenceBackend | None, typer.Option(
    "--backend", case_sensitive=False, help="onnxruntime (in-process) or triton (default: VCF_MODELS__BACKEND).")]
TritonOption = Annotated[str | None, typer.Option("--triton-url", help="Triton gRPC endpoint HOST:PORT (default: VCF_TRITON__URL).")]


def _connect(factory, what: str, settings, deadline_s: float = 60.0):
    """A Kafka client, retried while the broker is not reachable yet (up to ``deadline_s``)."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return factory(settings)
        except KafkaError:
            if time.monotonic() > deadline:
                typer.echo(f"Error: no Kafka broker reachable at {settings.bootstrap_servers} for the {what} "
                           f"after {deadline_s:.0f} s (VCF_KAFKA__BOOTSTRAP_SERVERS)", err=True)
                raise typer.Exit(code=1) from None
            time.sleep(2.0)


def _worker_consumer(kafka):
    """The worker's consumer; metadata refreshed every 30 s, so a topic created after the
    worker started (or partitions added) is picked up soon rather than after 5 minutes."""
    from kafka import KafkaConsumer

    from streaming.kafka_clients import consumer_config

    return KafkaConsumer(**consumer_config(kafka), metadata_max_age_ms=30_000)


def _wait_for_triton(settings, stop: dict) -> None:
    """With the triton backend, wait until Triton answers ready (the worker may start first)."""
    import requests

    if settings.models.backend != InferenceBackend.TRITON:
        return
    url = f"http://{settings.triton.http_url}/v2/health/ready"
    delay, waited = settings.worker.retry_backoff_s, 0.0
    while not stop["requested"]:
        try:
            if requests.get(url, timeout=2.0).status_code == 200:
                return
        except requests.RequestException:
            pass
        if waited == 0.0 or waited > 30:
            log.warning("waiting for Triton at %s to be ready (/readyz answers 503 meanwhile)", settings.triton.http_url)
            waited = 0.0
        time.sleep(delay)
        waited += delay
        delay = min(delay * 2, settings.worker.retry_backoff_max_s)
    raise typer.Exit(code=0)


def _screener_when_ready(settings, stop: dict):
    """The Screener; while Triton is unavailable at start-up, wait for it (readiness stays false)."""
    _wait_for_triton(settings, stop)
    delay = settings.worker.retry_backoff_s
    while True:
        try:
            return build_screener(settings)
        except TransientError as exc:
            if stop["requested"]:
                raise typer.Exit(code=0) from None
            log.warning("inference backend not available yet (%s); retrying in %.0f s", exc.message, delay)
            time.sleep(delay)
            delay = min(delay * 2, settings.worker.retry_backoff_max_s)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        backend: BackendOption = None,
        triton_url: TritonOption = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
    ) -> None:
        """Run the streaming worker: StudyEvents from Kafka in, ScreeningResults out (stop with SIGTERM)."""
        from streaming.kafka_clients import make_producer
        from streaming.metrics import HealthServer, Metrics
        from streaming.worker import Worker, WorkerFailure

        settings = load_settings()
        try:
            settings = apply_options(settings, backend, triton_url)
        except UsageError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=USAGE_ERROR) from None
        setup_logging(settings.logging)
        if verbose:
            logging.getLogger().setLevel(logging.DEBUG)

        holder: dict = {"worker": None, "requested": False}

        def on_signal(signum, _frame) -> None:
            if holder["requested"]:
                log.warning("second %s: exiting without draining (nothing more is committed)", signal.Signals(signum).name)
                raise SystemExit(1)
            holder["requested"] = True
            log.info("%s received: stopping intake and draining", signal.Signals(signum).name)
            if holder["worker"] is not None:
                holder["worker"].request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        metrics = Metrics()
        health = HealthServer(
            metrics, settings.worker.bind_host, settings.worker.metrics_port,
            ready=lambda: holder["worker"].ready() if holder["worker"] else (False, "starting"),
            live=lambda: holder["worker"].live() if holder["worker"] else (True, "starting"),
        ).start()
        log.info("metrics and health on %s:%d (/metrics, /healthz, /readyz)", settings.worker.bind_host, health.port)
        try:
            try:
                screener = _screener_when_ready(settings, holder)
            except UsageError as exc:
                typer.echo(f"Error: {exc}", err=True)
                raise typer.Exit(code=USAGE_ERROR) from None
            log.info("screening with %s (%s)", settings.models.backend.value, screener.pipeline_version)
            consumer = _connect(_worker_consumer, "consumer", settings.kafka)
            producer = _connect(make_producer, "producer", settings.kafka)
            worker = Worker(settings, screener, consumer, producer, metrics)
            holder["worker"] = worker
            worker.start()
            if holder["requested"]:
                worker.request_stop()
            try:
                worker.run()
            except WorkerFailure as exc:
                typer.echo(f"Error: {exc}", err=True)
                raise typer.Exit(code=1) from None
            log.info("worker stopped: %d studies finished", worker.completed)
        finally:
            health.stop()

    @app.command("submit")
    def submit(
        paths: Annotated[list[Path] | None, typer.Argument(
            help="Study folders, or folders of study folders (file:// events; with --store-to-pacs, DICOMweb events).",
            show_default=False, metavar="[PATH]...")] = None,
        from_pacs: Annotated[bool, typer.Option(
            "--from-pacs", help="Publish an event for every study of the DICOMweb archive (QIDO-RS paging).")] = False,
        store_to_pacs: Annotated[bool, typer.Option(
            "--store-to-pacs", help="First store each study folder in the PACS over STOW-RS, then publish DICOMweb events.")] = False,
        rate: Annotated[float | None, typer.Option(
            "--rate", min=0.001, help="Events per second (default for PACS events: VCF_PACS__MAX_REQUESTS_PER_S; none for folders).")] = None,
        limit: Annotated[int | None, typer.Option("--limit", min=1, help="Publish at most this many events.")] = None,
        priority: Annotated[int, typer.Option("--priority", min=0, max=9, help="Priority written in each event.")] = 0,
        topic: Annotated[str | None, typer.Option("--topic", help="Topic (default: VCF_KAFKA__STUDIES_TOPIC).")] = None,
    ) -> None:
        """Publish StudyEvents for study folders or for a whole DICOMweb archive (retrospective replay)."""
        from streaming.submit import run_submit

        settings = load_settings()
        try:
            count = run_submit(settings, paths or [], from_pacs, store_to_pacs, rate, limit, priority, topic)
        except UsageError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=USAGE_ERROR) from None
        except VcfScreenError as exc:  # a folder without DICOM, the PACS refusing or unreachable
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(f"published {count} study events to {topic or settings.kafka.studies_topic}")

    @app.command("bench")
    def bench(
        studies: Annotated[int, typer.Option("--studies", "-n", min=2, help="Phantom studies screened by each run.")] = 12,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the phantom studies.")] = 4242,
        folder: Annotated[Path | None, typer.Option(
            "--folder", help="Use these study folders instead of generating phantoms.")] = None,
        workers: Annotated[str, typer.Option("--workers", help="Comma-separated worker counts to measure.")] = "1,2",
        source: Annotated[str, typer.Option("--source", help="file (study folders) or dicomweb (stored in the PACS first).")] = "file",
        out: Annotated[Path, typer.Option("--out", help="Folder for the JSON figures and the PNG plot.")] = Path("benchmarks/results"),
        backend: BackendOption = None,
    ) -> None:
        """End-to-end streaming throughput and latency (1 and 2 workers) against a naive sequential baseline."""
        from streaming.bench import run_bench

        settings = load_settings()
        try:
            settings = apply_options(settings, backend, None)
            counts = [int(w) for w in workers.split(",") if w.strip()]
            if not counts or min(counts) < 1:
                raise UsageError(f"--workers {workers!r} must list positive worker counts, e.g. 1,2")
            if source not in ("file", "dicomweb"):
                raise UsageError(f"--source {source!r} must be file or dicomweb")
            paths = discover_studies([folder]) if folder is not None else None
        except (UsageError, ValueError) as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=USAGE_ERROR) from None
        run_bench(settings, studies=studies, seed=seed, folders=paths, worker_counts=counts, source=source, out=out)
