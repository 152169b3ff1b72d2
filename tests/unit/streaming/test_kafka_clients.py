from __future__ import annotations

from engine.settings import KafkaSettings
from streaming.kafka_clients import consumer_config, producer_config


def test_delivery_settings():
    settings = KafkaSettings(bootstrap_servers="a:9092,b:9092")
    producer = producer_config(settings)
    assert producer["bootstrap_servers"] == ["a:9092", "b:9092"]
    assert producer["acks"] == "all" and producer["enable_idempotence"] is True
    consumer = consumer_config(settings)
    assert consumer["enable_auto_commit"] is False
    assert consumer["group_id"] == "vcfscreen"


def test_sasl_ssl_settings_pass_the_secret_only_to_the_client():
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc-vcf", sasl_password="pw-123", ssl_cafile="/etc/ca.pem",
    )
    config = producer_config(settings)
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_password"] == "pw-123"
    assert config["ssl_cafile"] == "/etc/ca.pem"
    assert "pw-123" not in repr(settings)
