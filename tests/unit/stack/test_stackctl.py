"""The stack controller's own behaviour, without starting any real service."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from stack import stackctl


class Sleeper(stackctl.Service):
    """A fake service backed by a real process tree (a shell with a child)."""

    name = "sleeper"

    def __init__(self, tmp_path, port):
        self._port = port
        super().__init__()
        self.dir = tmp_path / "sleeper"
        self.pidfile = self.dir / "pid"
        self.log = self.dir / "sleeper.log"

    @property
    def ports(self):
        return {"http": self._port}

    def install(self):
        pass

    def prepare(self):
        pass

    def command(self):
        return ["/bin/sh", "-c", "sleep 300 & sleep 300; wait"], {}

    def healthy(self):
        return self.pid() is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_taken_is_reported_with_service_and_port(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        service = Sleeper(tmp_path, port)
        with pytest.raises(stackctl.StackError, match=rf"sleeper: port {port} \(http\).*taken"):
            service.start()


def test_start_is_idempotent_and_stop_leaves_no_process(tmp_path):
    service = Sleeper(tmp_path, free_port())
    assert service.start() is True
    pid = service.pid()
    assert service.start() is False and service.pid() == pid  # second start: nothing new
    children = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert len(children) >= 2  # the shell and its sleeping children
    assert service.stop() is True
    assert not stackctl.group_alive(pid)
    assert service.stop() is False  # second stop: harmless
    assert service.status() == "stopped"


def test_unknown_service_is_refused():
    with pytest.raises(stackctl.StackError, match="unknown service"):
        stackctl.select(["zookeeper"])


def test_cli_status_runs_without_the_project_environment():
    # stackctl must work with the bare interpreter (it runs before the venv exists).
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import stack.stackctl"], capture_output=True, text=True,
        cwd=stackctl.ROOT,
    )
    assert result.returncode == 0, result.stderr
