from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from engine.settings import Settings, as_env_lines, masked_json


def test_defaults_are_the_documented_topics():
    s = Settings()
    assert (s.kafka.studies_topic, s.kafka.results_topic, s.kafka.dlq_topic) == (
        "ct.studies", "ct.vcf.results", "ct.studies.dlq",
    )


def test_environment_overrides_nested_fields(monkeypatch):
    monkeypatch.setenv("VCF_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("VCF_TRITON__URL", "triton:8001")
    monkeypatch.setenv("VCF_PREPROCESS__SPACING_MM", "[1.5, 1.0, 1.0]")
    monkeypatch.setenv("VCF_MODELS__BACKEND", "triton")
    s = Settings()
    assert s.kafka.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert s.triton.url == "triton:8001"
    assert s.preprocess.spacing_mm == (1.5, 1.0, 1.0)
    assert s.models.backend.value == "triton"


def test_secrets_are_masked_everywhere(monkeypatch):
    monkeypatch.setenv("VCF_KAFKA__SASL_PASSWORD", "kafka-hunter2")
    monkeypatch.setenv("VCF_PACS__PASSWORD", "pacs-hunter2")
    s = Settings()
    assert s.kafka.sasl_password.get_secret_value() == "kafka-hunter2"
    rendered = masked_json(s) + "\n".join(as_env_lines(s)) + repr(s) + str(s)
    assert "hunter2" not in rendered
    assert json.loads(masked_json(s))["pacs"]["password"] == "**********"


@pytest.mark.parametrize(
    "name, value",
    [
        ("VCF_PREPROCESS__SPACING_MM", "[0, 1, 1]"),
        ("VCF_PREPROCESS__HU_WINDOW", "[500, -200]"),
        ("VCF_GRADING__GRADE2_HEIGHT_LOSS", "0.5"),
        ("VCF_LOGGING__LEVEL", "chatty"),
        ("VCF_WORKER__MAX_IN_FLIGHT", "0"),
    ],
)
def test_bad_values_are_refused_naming_the_value(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_env_lines_round_trip(monkeypatch):
    monkeypatch.setenv("VCF_WORKER__METRICS_PORT", "9555")
    lines = dict(line.split("=", 1) for line in as_env_lines(Settings()))
    assert lines["VCF_WORKER__METRICS_PORT"] == "9555"
    assert lines["VCF_KAFKA__GROUP_ID"] == "vcfscreen"
