"""Every Prometheus metric of vcfscreen, and the worker's /metrics, /healthz, /readyz server.

All names start with ``vcfscreen_`` and carry their unit. Metrics are created on an injected
registry, so tests use a fresh one and nothing leaks between workers in one process.
Labels are a fixed, small set: never a study identifier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine import __version__
from engine.errors import LevelsNotNamedError, NoSpineError, NotEligibleError

OUTCOMES = ("ok", "not_eligible", "error", "dead_letter")
# Reasons a study is returned unscreened that a dashboard shows from the start: the series was
# not a screening CT, or the models could not read its spine (a model that finds nothing shows
# here first).
NOT_SCREENED_CODES = (NotEligibleError.code, NoSpineError.code, LevelsNotNamedError.code)
STAGES = ("fetch", "load", "preprocess", "infer", "postprocess", "produce")
# Study latencies span seconds to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Info("vcfscreen_build", "vcfscreen version of this process", registry=r)
        self.build_info.info({"version": __version__})
        self.studies = Counter(
            "vcfscreen_studies", "Studies finished, by outcome", ["outcome"], registry=r
        )
        self.stage_seconds = Histogram(
            "vcfscreen_stage_duration_seconds", "Time one study spends in a stage", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.study_seconds = Histogram(
            "vcfscreen_study_duration_seconds", "Time from intake to result for one study",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("vcfscreen_studies_in_flight", "Studies held by the worker now", registry=r)
        self.queue_depth = Gauge(
            "vcfscreen_queue_depth", "Studies waiting in front of a stage", ["stage"], registry=r
        )
        self.findings = Counter(
            "vcfscreen_findings", "Vertebrae reported, by Genant grade", ["grade"], registry=r
        )
        self.consumer_lag = Gauge(
            "vcfscreen_consumer_lag_messages", "Messages behind the end of each assigned partition",
            ["topic", "partition"], registry=r,
        )
        self.retries = Counter(
            "vcfscreen_retries", "Retries of a transient failure, by stage", ["stage"], registry=r
        )
        self.dead_letters = Counter(
            "vcfscreen_dead_letters", "Records sent to the dead-letter topic, by error code", ["code"],
            registry=r,
        )
        self.not_screened = Counter(
            "vcfscreen_studies_not_screened",
            "Studies whose result says not screened (not_eligible or error), by the code of its reason; "
            "records only dead-lettered (transient failures, invalid events) are in vcfscreen_dead_letters",
            ["code"], registry=r,
        )
        # Pre-create the label values that always exist, so dashboards show zeros, not gaps.
        for outcome in OUTCOMES:
            self.studies.labels(outcome=outcome)
        for stage in STAGES:
            self.queue_depth.labels(stage=stage).set(0)
            self.retries.labels(stage=stage)
        for grade in ("0", "1", "2", "3"):
            self.findings.labels(grade=grade)
        for code in NOT_SCREENED_CODES:
            self.not_screened.labels(code=code)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _QuietHTTPServer(ThreadingHTTPServer):
    """A scraper that gave up before the answer (a busy worker) is not worth a traceback on stderr."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class HealthServer:
    """/metrics, /healthz (the process is alive) and /readyz (its dependencies are reachable).

    ``ready`` is a callable returning ``(ok, detail)``; it is called on every /readyz request.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        ready: Callable[[], tuple[bool, str]] = lambda: (True, "ready"),
        live: Callable[[], tuple[bool, str]] = lambda: (True, "alive"),
    ):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer.metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = (outer.live if path == "/healthz" else outer.ready)()
                    self._send(200 if ok else 503, (detail + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes every few seconds: not worth a line
                pass

        self.metrics = metrics
        self.ready = ready
        self.live = live
        self._server = _QuietHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
