"""The Kafka readiness probe against peers that are not a ready broker (no Kafka needed).

The probe against the real broker, and the broker's health check that uses it, are tested in
tests/integration/test_kafka_broker.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from stack import kafka_probe, stackctl


def serve_once(reply: bytes) -> tuple[int, threading.Thread]:
    """A TCP server on a free port that reads one request and answers ``reply``, then closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                if reply:
                    conn.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_is_not_ready_with_the_reason():
    ok, reason = kafka_probe.ready("127.0.0.1", free_port(), timeout_s=1.0)
    assert not ok and "refused" in reason.lower()


def test_a_server_that_is_not_kafka_is_not_ready():
    port, thread = serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    ok, reason = kafka_probe.ready("127.0.0.1", port, timeout_s=2.0)
    thread.join(5)
    assert not ok and "not a Kafka broker" in reason


def test_a_server_that_closes_the_connection_is_not_ready():
    port, thread = serve_once(b"")
    ok, reason = kafka_probe.ready("127.0.0.1", port, timeout_s=2.0)
    thread.join(5)
    assert not ok and "closed the connection" in reason


def test_the_kafka_health_check_does_not_read_the_log(tmp_path, monkeypatch):
    # A log whose last lines hold no start message (a broker loading many partitions) and
    # nothing listening: the answer comes from the socket, with its reason kept for errors.
    kafka = stackctl.SERVICES["kafka"]
    monkeypatch.setattr(kafka, "log", tmp_path / "kafka.log")
    kafka.log.write_text("Kafka Server started\n" + "INFO [Broker id=1] Leader t-0 starts\n" * 5000)
    monkeypatch.setitem(stackctl.PORTS["kafka"], "broker", free_port())
    assert kafka.healthy() is False
    assert "refused" in kafka.last_check.lower()


def test_the_probe_is_standard_library_only():
    result = subprocess.run([sys.executable, "-S", "-c", "import stack.kafka_probe"], capture_output=True, check=False,
                            text=True, cwd=stackctl.ROOT)
    assert result.returncode == 0, result.stderr
