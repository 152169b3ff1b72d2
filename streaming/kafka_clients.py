"""Kafka producer and consumer built from :class:`engine.settings.KafkaSettings`.

Delivery settings live here so the worker, ``vcfscreen submit`` and the tests agree:
the producer waits for all in-sync replicas and is idempotent (a retried send is written
once); the consumer never auto-commits: offsets are committed by the worker only after the
result or the dead-letter record is acknowledged.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from engine.settings import KafkaSecurityProtocol, KafkaSettings


def security_config(settings: KafkaSettings) -> dict[str, Any]:
    """TLS and SASL options shared by producers, consumers and admin clients."""
    config: dict[str, Any] = {"security_protocol": settings.security_protocol.value}
    if settings.security_protocol in (KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL):
        if settings.ssl_cafile is not None:
            config["ssl_cafile"] = str(settings.ssl_cafile)
    if settings.security_protocol in (KafkaSecurityProtocol.SASL_PLAINTEXT, KafkaSecurityProtocol.SASL_SSL):
        config["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return config


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 5,
        "linger_ms": 5,
        "max_in_flight_requests_per_connection": 5,
        "request_timeout_ms": 30_000,
        **security_config(settings),
    }


def consumer_config(settings: KafkaSettings, group_id: str | None = None) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        "group_id": group_id or settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "max_poll_records": 16,
        **security_config(settings),
    }


def make_producer(settings: KafkaSettings) -> KafkaProducer:
    return KafkaProducer(**producer_config(settings))


def make_consumer(settings: KafkaSettings, *topics: str, group_id: str | None = None) -> KafkaConsumer:
    """A consumer subscribed to ``topics`` (none: subscribe or assign later)."""
    consumer = KafkaConsumer(**consumer_config(settings, group_id))
    if topics:
        consumer.subscribe(list(topics))
    return consumer
