"""Kafka producer and consumer built from :class:`engine.settings.KafkaSettings`.

Delivery settings live here so the worker, ``vcfscreen submit`` and the tests agree:
the producer waits for all in-sync replicas and is idempotent (a retried send is written
once); the consumer never auto-commits: offsets are committed by the worker only after the
result or the dead-letter record is acknowledged.

:func:`rebalance_listener` hides where kafka-python runs rebalance callbacks: kafka-python 2
calls them on the thread that polls, kafka-python 3 on the consumer's own IO thread, where a
callback must not block and cannot call the consumer's blocking API (``commit()`` raises
"Cannot block on net.run() from the IO thread itself").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.subscription_state import ConsumerRebalanceListener

try:  # kafka-python >= 3: listeners run on the consumer's IO thread
    from kafka import AsyncConsumerRebalanceListener
    from kafka.future import Future as KafkaFuture
except ImportError:  # kafka-python 2: listeners run inside poll(), on the caller's thread
    AsyncConsumerRebalanceListener = None
    KafkaFuture = None

from engine.settings import KafkaSecurityProtocol, KafkaSettings


def security_config(settings: KafkaSettings) -> dict[str, Any]:
    """TLS and SASL options shared by producers, consumers and admin clients."""
    config: dict[str, Any] = {"security_protocol": settings.security_protocol.value}
    tls = settings.security_protocol in (KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL)
    if tls and settings.ssl_cafile is not None:
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


Callback = Callable[[set], None]


def rebalance_listener(consumer, on_revoked: Callback, on_assigned: Callback,
                       on_lost: Callback | None = None):
    """A rebalance listener for ``consumer`` whose callbacks may block (wait for in-flight work)
    and call the consumer (``commit()``, ``pause()``) before the rebalance goes on.

    The callbacks always run while the thread that called ``poll()`` (or ``close()``) is blocked
    in it, so they may touch the state of that thread without a lock. ``on_lost`` (the group
    membership was lost: the partitions already belong to someone else, nothing can be
    committed) defaults to ``on_revoked``.
    """
    on_lost = on_lost or on_revoked
    if AsyncConsumerRebalanceListener is not None and isinstance(consumer, KafkaConsumer):
        return _ThreadedListener(consumer, on_revoked, on_assigned, on_lost)
    return _InlineListener(on_revoked, on_assigned, on_lost)


class _InlineListener(ConsumerRebalanceListener):
    """kafka-python 2 (and stand-ins): the callbacks run inside poll() on the polling thread."""

    def __init__(self, on_revoked: Callback, on_assigned: Callback, on_lost: Callback):
        self._revoked, self._assigned, self._lost = on_revoked, on_assigned, on_lost

    def on_partitions_revoked(self, revoked):
        self._revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self._assigned(set(assigned))

    def on_partitions_lost(self, lost):
        self._lost(set(lost))


if AsyncConsumerRebalanceListener is not None:

    class _ThreadedListener(AsyncConsumerRebalanceListener):
        """kafka-python 3: each callback runs on a helper thread while the listener coroutine
        awaits it, so the consumer's IO loop stays free (heartbeats go on, and the callback's
        ``commit()`` is carried out by that loop) and the rebalance waits for the callback."""

        def __init__(self, consumer, on_revoked: Callback, on_assigned: Callback, on_lost: Callback):
            self._consumer = consumer
            self._revoked, self._assigned, self._lost = on_revoked, on_assigned, on_lost

        async def on_partitions_revoked(self, revoked):
            await self._off_loop(self._revoked, set(revoked))

        async def on_partitions_assigned(self, assigned):
            await self._off_loop(self._assigned, set(assigned))

        async def on_partitions_lost(self, lost):
            await self._off_loop(self._lost, set(lost))

        def _off_loop(self, callback: Callback, partitions: set):
            done = KafkaFuture()

            def run() -> None:
                try:
                    callback(partitions)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                    done.failure(exc)
                else:
                    done.success(None)
                # The loop resumes the awaiting coroutine at its next turn; wake it now rather
                # than at the next heartbeat (an optimisation only: kafka-python internals).
                wakeup = getattr(getattr(self._consumer, "_net", None), "wakeup", None)
                if wakeup is not None:
                    wakeup()

            threading.Thread(target=run, name="kafka-rebalance-listener", daemon=True).start()
            return done
