"""Integration tests talk to the real servers of the local stack.

Each fixture brings its service up through the project's own stack controller (a no-op when
``make test`` or ``make stack-up`` already did) and stops at the end of the session what it
started. A service that cannot start fails the test with the controller's reason: nothing
here skips.
"""

from __future__ import annotations

import pytest

from engine.settings import KafkaSettings, PacsSettings, TritonSettings
from stack import stackctl


@pytest.fixture(scope="session")
def ensure_service():
    started: list[str] = []

    def ensure(name: str) -> None:
        try:
            stackctl.up([name], started=started)
        except stackctl.StackError as exc:
            pytest.fail(f"the {name} service of the local stack is needed and could not start:\n{exc}")

    yield ensure
    if started:
        stackctl.down(started)


@pytest.fixture(scope="session")
def kafka(ensure_service) -> KafkaSettings:
    ensure_service("kafka")
    return KafkaSettings(bootstrap_servers=f"{stackctl.HOST}:{stackctl.PORTS['kafka']['broker']}")


@pytest.fixture(scope="session")
def triton(ensure_service) -> TritonSettings:
    ensure_service("triton")
    ports = stackctl.PORTS["triton"]
    return TritonSettings(
        url=f"{stackctl.HOST}:{ports['grpc']}",
        http_url=f"{stackctl.HOST}:{ports['http']}",
        metrics_url=f"http://{stackctl.HOST}:{ports['metrics']}/metrics",
        max_retries=2,
        retry_backoff_s=0.2,
        timeout_s=30,
    )


@pytest.fixture(scope="session")
def pacs(ensure_service) -> PacsSettings:
    ensure_service("orthanc")
    return PacsSettings(dicomweb_url=f"http://{stackctl.HOST}:{stackctl.PORTS['orthanc']['http']}/dicom-web")


@pytest.fixture(scope="session")
def prometheus_url(ensure_service) -> str:
    ensure_service("prometheus")
    return f"http://{stackctl.HOST}:{stackctl.PORTS['prometheus']['http']}"
