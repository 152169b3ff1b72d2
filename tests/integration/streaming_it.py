"""Shared material of the streaming integration tests: phantom studies, models, topics, workers.

- Studies: small fast phantoms (PhantomConfig.fast, 96 matrix, field of view T11-L3), written
  once per session; a copy of one with a truncated slice is the corrupt study.
- Models: tiny untrained networks exported with engine.models.export; the segmenter's
  background channel is raised so it finds no vertebral body, and bright bone reads as sacrum,
  so every study is an `ok` reading of S1 alone (fast, deterministic post-processing: these
  tests are about delivery, not accuracy; a study where nothing at all is found would be
  `not_eligible`, no_spine).
- Topics and consumer groups are unique per test.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import torch
from kafka import KafkaConsumer, TopicPartition

from engine.settings import KafkaSettings
from streaming.kafka_clients import make_producer
from streaming.procs import TopicReader, WorkerProcess, delete_topics, worker_env
from streaming.submit import Publisher

STUDIES = 6


class BackgroundBiased(torch.nn.Module):
    """A segmenter that prefers background except on bright bone, which it calls sacrum: a real
    ONNX model with a known answer (S1 alone)."""

    SACRUM = 3
    BONE = 0.25
    """Windowed input above which bone reads as sacrum (about 150 HU in the default window)."""

    def __init__(self, net: torch.nn.Module, channels: int):
        super().__init__()
        self.net = net
        bias = torch.zeros(1, channels, 1, 1, 1)
        bias[0, 0] = 50.0
        self.register_buffer("bias", bias)
        sacrum = torch.zeros(1, channels, 1, 1, 1)
        sacrum[0, self.SACRUM] = 100.0
        self.register_buffer("sacrum", sacrum)

    def forward(self, x):
        return self.net(x) + self.bias + (x > self.BONE).float() * self.sacrum


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    from engine.models.export import export_classifier, export_segmenter
    from engine.models.networks import (
        ClassifierConfig,
        SegmenterConfig,
        build_classifier,
        build_segmenter,
    )

    folder = tmp_path_factory.mktemp("stream-models")
    torch.manual_seed(11)
    seg_config = SegmenterConfig(channels=(4, 8, 16), num_res_units=1)
    cls_config = ClassifierConfig(depth=18, widths=(4, 4, 8, 8), crop_size=32)
    segmenter = BackgroundBiased(build_segmenter(seg_config).eval(), seg_config.out_channels).eval()
    export_segmenter(segmenter, seg_config, folder / "vertebra_seg.onnx", version="it-0",
                     check_shapes=((1, 1, 16, 16, 16),))
    export_classifier(build_classifier(cls_config).eval(), cls_config, folder / "vertebra_cls.onnx",
                      version="it-0", check_batches=(1,))
    return folder


@pytest.fixture(scope="session")
def phantom_studies(tmp_path_factory) -> list[tuple[Path, str]]:
    """(folder, StudyInstanceUID) of the session's phantom studies."""
    from engine.phantom import PhantomConfig, generate_study, write_study

    root = tmp_path_factory.mktemp("stream-phantoms")
    config = PhantomConfig.fast(matrix=96, fov_levels=("T11", "L3"), scout_probability=0.0,
                                thick_series_probability=0.0, sagittal_series_probability=0.0)
    studies = []
    for index in range(STUDIES):
        folder = Path(write_study(generate_study(880_000 + index, config), root))
        studies.append((folder, folder.name))
    return studies


@pytest.fixture(scope="session")
def corrupt_study(phantom_studies, tmp_path_factory) -> tuple[Path, str]:
    """A copy of a phantom study whose middle slice lost the end of its pixel data."""
    source, uid = phantom_studies[0]
    folder = tmp_path_factory.mktemp("stream-corrupt") / uid
    shutil.copytree(source, folder)
    slices = sorted(p for p in folder.rglob("*.dcm"))
    damaged = slices[len(slices) // 2]
    damaged.write_bytes(damaged.read_bytes()[:-4000])
    return folder, uid


def unique_kafka(kafka: KafkaSettings, name: str) -> KafkaSettings:
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    return kafka.model_copy(update={
        "studies_topic": f"it-{run}-studies", "results_topic": f"it-{run}-results",
        "dlq_topic": f"it-{run}-dlq", "group_id": f"it-{run}-group",
    })


@pytest.fixture
def topics(kafka):
    """Unique topics per test (``topics("name")``), deleted from the broker afterwards."""
    made: list[KafkaSettings] = []

    def make(name: str) -> KafkaSettings:
        made.append(unique_kafka(kafka, name))
        return made[-1]

    yield make
    delete_topics(kafka, [t for s in made for t in run_topics(s)])


def run_topics(settings: KafkaSettings) -> list[str]:
    return [settings.studies_topic, settings.results_topic, settings.dlq_topic, settings.studies_topic + "-replay"]


def publish(kafka: KafkaSettings, events=(), raw=()) -> int:
    producer = make_producer(kafka)
    try:
        publisher = Publisher(producer, kafka.studies_topic)
        for event in events:
            publisher.publish(event)
        for key, value in raw:
            publisher.publish_raw(key, value)
        return publisher.wait()
    finally:
        producer.close(timeout=10)


def start_worker(kafka: KafkaSettings, models: Path, log: Path, **env) -> WorkerProcess:
    values = {"VCF_MODELS__DIR": str(models), "VCF_MODELS__CROP_SIZE": "32", "VCF_MODELS__INTRA_OP_THREADS": "1",
              "VCF_WORKER__METRICS_PORT": "0", "VCF_WORKER__DRAIN_GRACE_S": "60", "VCF_LOGGING__LEVEL": "INFO",
              **env}
    return WorkerProcess(worker_env(kafka, **values), log).start()


def read_records(kafka: KafkaSettings, topic: str, done, timeout_s: float, workers=()) -> list:
    """Records of ``topic`` once ``done(records)``; fails with the workers' logs on timeout."""
    reader = TopicReader(kafka, topic)
    try:
        deadline = time.monotonic() + timeout_s
        while not done(reader.records):
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {w.log_path.name}\n{w.log_text()[-4000:]}" for w in workers)
                pytest.fail(f"timed out after {timeout_s:.0f} s on {topic}: {len(reader.records)} records\n{logs}")
            reader.poll()
        return list(reader.records)
    finally:
        reader.close()


def read_to_end(kafka: KafkaSettings, topic: str, timeout_s: float = 60.0) -> list:
    """Every record of ``topic`` up to its current end (to count duplicates once writers stopped)."""
    reader = TopicReader(kafka, topic)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.consumer.partitions_for_topic(topic) or [])]
        end = sum(reader.consumer.end_offsets(partitions).values())
        deadline = time.monotonic() + timeout_s
        while len(reader.records) < end:
            if time.monotonic() > deadline:
                pytest.fail(f"read {len(reader.records)} of the {end} records of {topic} in {timeout_s:.0f} s")
            reader.poll()
        return list(reader.records)
    finally:
        reader.close()


def keys_of(records) -> Counter:
    return Counter(r.key.decode() for r in records)


def statuses(records) -> dict[str, str]:
    return {r.key.decode(): json.loads(r.value)["status"] for r in records}


def committed_offsets(kafka: KafkaSettings) -> tuple[dict[int, int | None], dict[int, int]]:
    """(committed offset, end offset) per partition of the studies topic for the test's group."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers.split(","), group_id=kafka.group_id,
                             enable_auto_commit=False)
    try:
        partitions = [TopicPartition(kafka.studies_topic, p)
                      for p in sorted(consumer.partitions_for_topic(kafka.studies_topic) or [])]
        ends = consumer.end_offsets(partitions)
        return ({tp.partition: consumer.committed(tp) for tp in partitions},
                {tp.partition: ends[tp] for tp in partitions})
    finally:
        consumer.close(autocommit=False)
