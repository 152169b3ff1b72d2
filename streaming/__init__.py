"""Kafka in and out: event schemas, the worker and its stages, fetchers, sinks, metrics."""
