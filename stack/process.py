"""Process and install helpers of the local stack, and the ``Service`` base class.

Standard library only (the stack runs before the project environment exists).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("VCF_STACK_DIR", ROOT / ".stack"))
HOST = "127.0.0.1"

PORTS = {
    "kafka": {"broker": 9092, "controller": 9093},
    "triton": {"http": 8000, "grpc": 8001, "metrics": 8002},
    "orthanc": {"http": 8042},
    "prometheus": {"http": 9090},
}
WORKER_METRICS_PORT = int(os.environ.get("VCF_WORKER__METRICS_PORT", "9400"))
"""Where Prometheus expects a vcfscreen worker's /metrics (the worker's default port)."""


class StackError(RuntimeError):
    """A service could not be installed, started or stopped; the message says why."""


# ----------------------------------------------------------------------------- helpers


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def reap(pgid: int) -> None:
    """Collect exit statuses of our own children in the group (when started in-process)."""
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def group_alive(pgid: int) -> bool:
    reap(pgid)
    return bool(group_members(pgid))


def run(cmd: list[str], what: str, log: Path | None = None, env: dict | None = None) -> None:
    """Run an install step; on failure raise naming the step and the tail of its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")


def apt_install(packages: list[str], service: str) -> None:
    if shutil.which("apt-get") is None:
        raise StackError(f"{service}: apt-get is not available; install {' '.join(packages)} by hand")
    if os.geteuid() != 0:
        raise StackError(
            f"{service}: needs Debian packages {' '.join(packages)}; run as root or "
            f"`sudo apt-get install -y {' '.join(packages)}`"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*Packages*")):
        run(["apt-get", "update"], f"{service}: apt-get update", env=env)
    # policy-rc.d keeps the packages' own system services from starting: we run our own.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    try:
        run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            f"{service}: apt-get install {' '.join(packages)}",
            env=env,
        )
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ----------------------------------------------------------------------------- services


class Service:
    name = "service"
    start_timeout_s = 60.0
    stop_timeout_s = 20.0

    def __init__(self) -> None:
        self.last_check = ""
        """What the last health check saw, when it says more than healthy / not healthy."""
        self.started_at = time.monotonic()
        self.dir = STATE / self.name
        self.pidfile = self.dir / "pid"
        self.log = self.dir / f"{self.name}.log"

    # each service fills these in
    def install(self) -> None: ...
    def command(self) -> tuple[list[str], dict[str, str]]: ...
    def healthy(self) -> bool: ...
    def prepare(self) -> None: ...

    @property
    def ports(self) -> dict[str, int]:
        return PORTS[self.name]

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self) -> bool:
        """Start the process if it is not running. Returns True if it was started now."""
        if self.pid() is not None:
            return False
        self.pidfile.unlink(missing_ok=True)
        for label, port in self.ports.items():
            if port_in_use(port):
                raise StackError(
                    f"{self.name}: port {port} ({label}) on {HOST} is taken by another process; "
                    f"stop it or free the port (`ss -ltnp 'sport = :{port}'` shows which)"
                )
        self.install()
        self.prepare()
        cmd, env = self.command()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        with open(self.log, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=self.dir,
                start_new_session=True,  # its own process group: stopped as one
            )
        self.pidfile.write_text(str(proc.pid))
        return True

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.pid() is None:
                raise StackError(f"{self.name}: the process exited during start-up; log {self.log}:\n{tail(self.log)}")
            time.sleep(0.5)
        seen = f" ({self.last_check})" if self.last_check else ""
        raise StackError(
            f"{self.name}: not healthy after {self.start_timeout_s:.0f} s{seen}; log {self.log}:\n{tail(self.log)}"
        )

    def recorded_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> bool:
        """Stop the whole process group (children too). Returns True if something was running."""
        pgid = self.recorded_pid()  # started with start_new_session: the leader's pid is the group
        if pgid is None or not group_alive(pgid):
            self.pidfile.unlink(missing_ok=True)
            return False
        for sig, timeout in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and group_alive(pgid):
                time.sleep(0.2)
            if not group_alive(pgid):
                break
        if group_alive(pgid):
            raise StackError(f"{self.name}: processes {group_members(pgid)} survived SIGKILL")
        self.pidfile.unlink(missing_ok=True)
        return True

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return "healthy" if self.healthy() else "running, not healthy"
