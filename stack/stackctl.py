"""The local service stack: Kafka, Triton, Orthanc and Prometheus on 127.0.0.1.

    python3 -m stack.stackctl up [SERVICE...]      install what is missing, start, wait healthy
    python3 -m stack.stackctl down [SERVICE...]    stop, leaving no process behind
    python3 -m stack.stackctl status               one line per service
    python3 -m stack.stackctl run -- CMD...        up, run CMD, then down what this call started

Standard library only, so it runs before the project's virtual environment exists.
Binaries, data and logs live under ``.stack/`` in the repository (git-ignored). Every
command is idempotent: ``up`` on a healthy service does nothing, ``down`` on a stopped one
does nothing. A service that cannot start says which one and why.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
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
        raise StackError(
            f"{self.name}: not healthy after {self.start_timeout_s:.0f} s; log {self.log}:\n{tail(self.log)}"
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


class Kafka(Service):
    """Apache Kafka 4, one KRaft node acting as broker and controller."""

    name = "kafka"
    start_timeout_s = 90.0
    stop_timeout_s = 40.0

    @property
    def libs(self) -> Path:
        return self.dir / "libs"

    def install(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise StackError("kafka: Java is missing; install a Java 17+ runtime (Debian: openjdk-17-jre-headless)")
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        try:
            major = int(out.split('"')[1].split(".")[0])
        except (IndexError, ValueError):
            major = 0
        if major < 17:
            raise StackError(f"kafka: Java 17+ needed, found: {out.strip().splitlines()[0] if out else java}")
        stamp = self.libs / ".complete"
        pom = ROOT / "stack" / "kafka" / "pom.xml"
        if stamp.exists() and stamp.read_text() == pom.read_text():
            return
        if shutil.which("mvn") is None:
            raise StackError("kafka: Maven (mvn) is missing; it resolves the broker jars from Maven Central")
        shutil.rmtree(self.libs, ignore_errors=True)
        print(f"kafka: resolving broker jars from Maven Central ({pom.relative_to(ROOT)})", flush=True)
        run(
            ["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={self.libs}"],
            "kafka: mvn dependency:copy-dependencies",
            log=self.dir / "mvn.log",
        )
        stamp.write_text(pom.read_text())

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        log4j = self.dir / "log4j2.properties"
        return [
            "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.libs}/*", main, *args,
        ]

    def prepare(self) -> None:
        data = self.dir / "data"
        broker, controller = self.ports["broker"], self.ports["controller"]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{controller}",
            "listeners": f"PLAINTEXT://{HOST}:{broker},CONTROLLER://{HOST}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{broker}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "24",
        }
        config = self.dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.stdout.ref = STDOUT\n"
            "appender.stdout.type = Console\n"
            "appender.stdout.name = STDOUT\n"
            "appender.stdout.layout.type = PatternLayout\n"
            "appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
            "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
            "logger.server.name = kafka.server.KafkaRaftServer\nlogger.server.level = INFO\n"
        )
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), heap="128m"),
                "kafka: formatting the KRaft storage",
                log=self.dir / "format.log",
            )

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self._java("kafka.Kafka", str(self.dir / "server.properties"), heap="512m"), {}

    def healthy(self) -> bool:
        if not port_in_use(self.ports["broker"]):
            return False
        return "Kafka Server started" in tail(self.log, 200)


class Triton(Service):
    """Triton Inference Server (CPU) from the nvidia-pytriton wheel, in its own environment."""

    name = "triton"
    start_timeout_s = 180.0
    stop_timeout_s = 30.0

    @property
    def venv(self) -> Path:
        return self.dir / "venv"

    @property
    def pytriton(self) -> Path:
        return self.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "pytriton"

    @property
    def model_repository(self) -> Path:
        return Path(os.environ.get("VCF_STACK_TRITON_REPOSITORY", ROOT / "triton_models" / "cpu"))

    def install(self) -> None:
        requirements = ROOT / "stack" / "triton" / "requirements.txt"
        stamp = self.venv / ".complete"
        if stamp.exists() and stamp.read_text() == requirements.read_text():
            return
        libpython = Path(sysconfig.get_config_var("LIBDIR") or "") / sysconfig.get_config_var("LDLIBRARY")
        if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libpython.exists():
            raise StackError(
                f"triton: the Python backend stub needs a shared libpython "
                f"{sys.version_info.major}.{sys.version_info.minor}; {sys.executable} was built without one"
            )
        print("triton: creating its environment (nvidia-pytriton, onnxruntime, numpy<2)", flush=True)
        shutil.rmtree(self.venv, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(self.venv)], "triton: python -m venv")
        run(
            [str(self.venv / "bin" / "pip"), "install", "-q", "-r", str(requirements)],
            "triton: pip install",
            log=self.dir / "pip.log",
        )
        server = self.pytriton / "tritonserver"
        pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = server / "python_backend_stubs" / pyver / "triton_python_backend_stub"
        if not stub.exists():
            raise StackError(f"triton: the pytriton wheel has no Python backend stub for Python {pyver} ({stub})")
        shutil.copy2(stub, server / "backends" / "python" / "triton_python_backend_stub")
        stamp.write_text(requirements.read_text())

    def command(self) -> tuple[list[str], dict[str, str]]:
        server = self.pytriton / "tritonserver"
        if not self.model_repository.is_dir():
            raise StackError(f"triton: model repository {self.model_repository} does not exist")
        site = self.pytriton.parent
        lib_dirs = [str(site / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR")]
        env = {
            "LD_LIBRARY_PATH": ":".join(lib_dirs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":"),
            # The Python backend stub embeds this interpreter; the models import from the
            # server's own environment (numpy<2, onnxruntime) and from this repository.
            "PYTHONPATH": ":".join([str(site), str(ROOT)]),
            "PYTHONNOUSERSITE": "1",
            # The stub finds its interpreter's prefix through PATH: the venv's python first
            # makes the venv's site-packages the models' (as pytriton does).
            "PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}",
            "OMP_NUM_THREADS": "1",
        }
        cmd = [
            str(server / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={server / 'backends'}",
            f"--http-address={HOST}", f"--http-port={self.ports['http']}",
            f"--grpc-address={HOST}", f"--grpc-port={self.ports['grpc']}",
            f"--metrics-address={HOST}", f"--metrics-port={self.ports['metrics']}",
            "--allow-cpu-metrics=true",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]
        return cmd, env

    def healthy(self) -> bool:
        return http_status(f"http://{HOST}:{self.ports['http']}/v2/health/ready") == 200


class Orthanc(Service):
    """Orthanc with its DICOMweb plugin (Debian packages)."""

    name = "orthanc"
    packages = ["orthanc", "orthanc-dicomweb"]
    plugin = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

    def install(self) -> None:
        if shutil.which("Orthanc") is None or not self.plugin.exists():
            print("orthanc: installing Debian packages orthanc, orthanc-dicomweb", flush=True)
            apt_install(self.packages, self.name)

    def prepare(self) -> None:
        db = self.dir / "db"
        db.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "vcfscreen-local",
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "HttpServerEnabled": True,
            "HttpPort": self.ports["http"],
            # Orthanc 1.10 has no bind address: it refuses every client but localhost instead.
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "Plugins": [str(self.plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"{HOST}:{self.ports['http']}"},
            "StableAge": 5,
            "ConcurrentJobs": 2,
        }
        (self.dir / "orthanc.json").write_text(json.dumps(config, indent=2))

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [shutil.which("Orthanc") or "Orthanc", str(self.dir / "orthanc.json")], {}

    def healthy(self) -> bool:
        base = f"http://{HOST}:{self.ports['http']}"
        return http_status(f"{base}/system") == 200 and http_status(f"{base}/dicom-web/studies") == 200


class Prometheus(Service):
    """Prometheus (Debian package) scraping Triton and the vcfscreen worker."""

    name = "prometheus"
    packages = ["prometheus"]

    def install(self) -> None:
        if shutil.which("prometheus") is None or shutil.which("promtool") is None:
            print("prometheus: installing Debian package prometheus", flush=True)
            apt_install(self.packages, self.name)

    def prepare(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        config = (ROOT / "stack" / "prometheus" / "prometheus.yml.in").read_text()
        config = config.replace("@TRITON_METRICS@", f"{HOST}:{PORTS['triton']['metrics']}")
        config = config.replace("@WORKER_METRICS@", f"{HOST}:{WORKER_METRICS_PORT}")
        (self.dir / "prometheus.yml").write_text(config)
        run(["promtool", "check", "config", str(self.dir / "prometheus.yml")], "prometheus: promtool check config")

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={HOST}:{self.ports['http']}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2d",
        ], {}

    def healthy(self) -> bool:
        return http_status(f"http://{HOST}:{self.ports['http']}/-/ready") == 200


SERVICES: dict[str, Service] = {s.name: s for s in (Kafka(), Orthanc(), Prometheus(), Triton())}


# ----------------------------------------------------------------------------- commands


def select(names: list[str]) -> list[Service]:
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    return [SERVICES[n] for n in (names or list(SERVICES))]


def up(names: list[str] | None = None, started: list[str] | None = None) -> list[str]:
    """Start the services (all by default) and wait until each is healthy.

    Returns the names of the services this call started (the others were already up); they
    are also appended to ``started`` as they start, so a caller knows them even on failure."""
    services = select(names or [])
    started = [] if started is None else started
    failures: list[str] = []
    for service in services:
        try:
            if service.start():
                started.append(service.name)
        except StackError as exc:
            failures.append(str(exc))
    for service in services:
        if any(f.startswith(f"{service.name}:") for f in failures):
            continue
        try:
            service.wait_healthy()
        except StackError as exc:
            failures.append(str(exc))
            continue
        elapsed = time.monotonic() - service.started_at
        note = f"started, healthy after {elapsed:.1f} s" if service.name in started else "already running"
        print(f"{service.name:<11} {note}: {endpoints(service)}", flush=True)
    if failures:
        raise StackError("\n".join(failures))
    return started


def down(names: list[str] | None = None) -> None:
    for service in reversed(select(names or [])):
        stopped = service.stop()
        print(f"{service.name:<11} {'stopped' if stopped else 'was not running'}", flush=True)


def endpoints(service: Service) -> str:
    return ", ".join(f"{label} {HOST}:{port}" for label, port in service.ports.items())


def status() -> bool:
    all_healthy = True
    for service in SERVICES.values():
        state = service.status()
        all_healthy &= state == "healthy"
        print(f"{service.name:<11} {state:<22} {endpoints(service)}  log {service.log.relative_to(ROOT) if service.log.is_relative_to(ROOT) else service.log}")
    return all_healthy


def run_with_stack(cmd: list[str]) -> int:
    """Bring the stack up, run ``cmd``, bring down what this call started (even on failure)."""
    if not cmd:
        raise StackError("run: no command given (usage: stackctl run -- CMD...)")
    started: list[str] = []
    try:
        up(started=started)
        print(f"running: {' '.join(cmd)}", flush=True)
        return subprocess.call(cmd)
    finally:
        if started:
            down(started)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        cmd = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        try:
            return run_with_stack(cmd)
        except StackError as exc:
            print(f"stack run failed:\n{exc}", file=sys.stderr)
            return 1
    parser = argparse.ArgumentParser(prog="stackctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "install"])
    parser.add_argument("services", nargs="*", help=f"default: all of {', '.join(SERVICES)}")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.services)
        elif args.command == "down":
            down(args.services)
        elif args.command == "install":
            for service in select(args.services):
                service.install()
        else:
            return 0 if status() else 3
    except StackError as exc:
        print(f"stack {args.command} failed:\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
