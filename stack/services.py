"""The four services of the local stack: Kafka, Triton, Orthanc, Prometheus."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

from stack import kafka_probe
from stack.process import (
    HOST,
    PORTS,
    ROOT,
    WORKER_METRICS_PORT,
    Service,
    StackError,
    apt_install,
    http_status,
    run,
)

NODE_ID = 1
"""The KRaft node id of the local broker (broker and controller in one)."""


def new_cluster_id(draw=uuid.uuid4) -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding.

    An id starting with '-' (1 draw in 64) is drawn again: the storage tool's argument parser
    reads it as an option and refuses the format ("argument --cluster-id/-t: expected one
    argument"). Kafka's own random UUIDs avoid that leading '-' for the same reason."""
    while True:
        cluster_id = base64.urlsafe_b64encode(draw().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


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
            "node.id": str(NODE_ID),
            "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller}",
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
            cluster_id = new_cluster_id()
            run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), heap="128m"),
                "kafka: formatting the KRaft storage",
                log=self.dir / "format.log",
            )

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self._java("kafka.Kafka", str(self.dir / "server.properties"), heap="512m"), {}

    def healthy(self) -> bool:
        """Ready when the broker answers a Metadata request and lists itself as a live broker
        (not from its log: a broker loading many partitions writes hundreds of lines after
        its start message, and an old start message proves nothing about this start)."""
        ok, self.last_check = kafka_probe.ready(HOST, self.ports["broker"], node_id=NODE_ID)
        return ok


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
        pip = str(self.venv / "bin" / "pip")
        run([pip, "install", "-q", "--upgrade", "pip>=25.1"], "triton: pip upgrade", log=self.dir / "pip.log")
        # The wheels are large: resume an interrupted download rather than fail (pip >= 25.1).
        run([pip, "install", "-q", "--resume-retries", "20", "-r", str(requirements)],
            "triton: pip install", log=self.dir / "pip.log")
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
