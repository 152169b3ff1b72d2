"""Running ``vcfscreen serve`` as a child process and reading a topic from its start.

Shared by the demo, the benchmark and the integration tests, which all drive real workers
the way an operator does: environment settings in, SIGTERM (or SIGKILL) to stop, results
read back from the broker.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from engine.settings import KafkaSettings
from streaming.kafka_clients import security_config

_ASSIGNED = re.compile(r"assigned partitions: (.*)$")
_CLI = (
    "import os; from streaming.procs import die_with_parent; die_with_parent(int(os.environ['VCF_PARENT_PID']))\n"
    "from engine.cli import main; main()"
)


class WorkerProcess:
    """One ``vcfscreen serve`` child with its own log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, args: tuple[str, ...] = (), nice: int = 0):
        self.env = {**os.environ, **env}
        self.log_path = Path(log_path)
        self.args = args
        self.nice = nice
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
        command = [sys.executable, "-c", _CLI, "serve", *self.args]
        if self.nice:
            command = ["nice", "-n", str(self.nice), *command]
        env = {**self.env, "VCF_PARENT_PID": str(os.getpid())}
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else -1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def assignment(self) -> set[tuple[str, int]] | None:
        """The partitions of the last 'assigned partitions' log line (None before the first)."""
        last = None
        for line in self.log_text().splitlines():
            match = _ASSIGNED.search(line)
            if match:
                last = match.group(1)
        if last is None:
            return None
        if last.strip() == "none":
            return set()
        return {(m.group(1), int(m.group(2))) for m in re.finditer(r"([^\s,\[]+)\[(\d+)\]", last)}

    def wait_assigned(self, timeout_s: float = 120.0, nonempty: bool = True) -> set[tuple[str, int]]:
        """The worker's partitions once it has some (or, ``nonempty=False``, once it joined at all)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            assigned = self.assignment()
            if assigned is not None and (assigned or not nonempty):
                return assigned
            time.sleep(0.2)
        raise TimeoutError(f"worker not assigned after {timeout_s:.0f} s:\n{self.log_text()[-3000:]}")

    def stop(self, timeout_s: float = 120.0) -> int:
        """SIGTERM, then wait for the drain; SIGKILL if it does not exit in time."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no drain, no commit (what an OOM kill or a node loss does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def die_with_parent(parent_pid: int) -> None:
    """In the worker child, first thing: SIGTERM (a drain) when the parent dies, so a killed test
    or bench leaves no worker behind (Linux; elsewhere the caller's stop() remains the only way).

    Run after exec, not as a ``preexec_fn`` (unsafe in a parent with threads, and the Kafka
    clients run threads). The signal comes when the *thread* that started the child ends, so
    start workers from a thread that outlives them (the tests and the bench use the main one)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl: nobody would send the signal
        os.kill(os.getpid(), signal.SIGTERM)


def worker_env(kafka: KafkaSettings, **extra: str) -> dict[str, str]:
    """VCF_* variables that point a worker at ``kafka``'s broker and topics."""
    env = {
        "VCF_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "VCF_KAFKA__STUDIES_TOPIC": kafka.studies_topic,
        "VCF_KAFKA__RESULTS_TOPIC": kafka.results_topic,
        "VCF_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "VCF_KAFKA__GROUP_ID": kafka.group_id,
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class TopicReader:
    """Reads every partition of a topic from the beginning, without a consumer group."""

    def __init__(self, kafka: KafkaSettings, topic: str):
        self.topic = topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers.split(","), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", **security_config(kafka),
        )
        self.records: list = []
        self._assigned: set[TopicPartition] = set()

    def _assign(self) -> None:
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        wanted = {TopicPartition(self.topic, p) for p in partitions}
        if wanted - self._assigned:
            self._assigned = wanted
            self.consumer.assign(sorted(wanted, key=lambda tp: tp.partition))
            self.consumer.seek_to_beginning()

    def poll(self, timeout_ms: int = 500) -> list:
        if not self._assigned:
            self._assign()
            if not self._assigned:
                time.sleep(timeout_ms / 1000.0)
                return []
        new = [r for batch in self.consumer.poll(timeout_ms=timeout_ms).values() for r in batch]
        self.records += new
        return new

    def read_until(self, done: Callable[[list], bool], timeout_s: float, on_new=None) -> list:
        deadline = time.monotonic() + timeout_s
        while not done(self.records) and time.monotonic() < deadline:
            new = self.poll()
            if new and on_new is not None:
                on_new(new)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def delete_topics(kafka: KafkaSettings, topics) -> None:
    """Delete the topics of a test or benchmark run (those that exist), so runs do not pile up
    partitions on the broker. Best effort: a failure is ignored (the topics are only left behind)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers.split(","), **security_config(kafka))
    except (KafkaError, OSError):
        return
    try:
        existing = [t for t in set(topics) if t in set(admin.list_topics())]
        if existing:
            admin.delete_topics(existing, timeout_ms=30_000)
    except (KafkaError, OSError):
        pass
    finally:
        admin.close()
