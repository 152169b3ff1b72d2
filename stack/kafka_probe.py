"""Is a Kafka broker ready? Asked over its own protocol, with the standard library only.

The stack controller runs before the project environment exists, so this speaks the few
bytes of the Kafka wire protocol it needs itself:

1. ApiVersions (v0): the broker answers requests at all, and which Metadata versions it takes.
2. Metadata (v4..v8, for no topic): the broker lists itself among the live brokers. A KRaft
   broker is listed only once it has caught up with the cluster metadata and is unfenced,
   which is when clients can use it, however many partitions it had to load first.

Requests use header v1 (api_key, api_version, correlation_id, client_id); these response
versions are not "flexible", so their headers are just the correlation id.
"""

from __future__ import annotations

import socket
import struct

API_METADATA = 3
API_VERSIONS = 18
METADATA_VERSIONS = range(4, 9)
"""Non-flexible Metadata versions this parser reads (Kafka 4 dropped v0-v3)."""
CLIENT_ID = b"vcfscreen-stackctl"


class ProbeError(Exception):
    """The broker did not answer as a ready Kafka broker; the message says what happened."""


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProbeError(f"truncated response ({len(self.data)} bytes)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def string(self) -> str | None:
        length = self.take(">h")
        if length < 0:
            return None
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        return raw.decode(errors="replace")


def _request(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> _Reader:
    header = struct.pack(">hhih", api_key, version, correlation, len(CLIENT_ID)) + CLIENT_ID
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    size = struct.unpack(">i", _receive(sock, 4))[0]
    if not 4 <= size <= 16 * 1024 * 1024:
        raise ProbeError(f"implausible response size {size}: not a Kafka broker?")
    reader = _Reader(_receive(sock, size))
    if reader.take(">i") != correlation:
        raise ProbeError("response correlation id does not match the request")
    return reader


def _receive(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ProbeError("the broker closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _metadata_version(reader: _Reader) -> int:
    error = reader.take(">h")
    if error:
        raise ProbeError(f"ApiVersions answered error code {error}")
    for _ in range(reader.take(">i")):
        key, low, high = reader.take(">hhh")
        if key == API_METADATA:
            usable = [v for v in METADATA_VERSIONS if low <= v <= high]
            if not usable:
                raise ProbeError(f"the broker takes Metadata v{low}-v{high}, this probe reads v4-v8")
            return usable[-1]
    raise ProbeError("the broker does not list the Metadata API")


def _brokers(reader: _Reader) -> tuple[dict[int, tuple[str, int]], int]:
    reader.take(">i")  # throttle_time_ms
    brokers = {}
    for _ in range(reader.take(">i")):
        node = reader.take(">i")
        host = reader.string() or ""
        port = reader.take(">i")
        reader.string()  # rack
        brokers[node] = (host, port)
    reader.string()  # cluster_id
    controller = reader.take(">i")
    return brokers, controller


def probe(host: str, port: int, node_id: int | None = None, timeout_s: float = 2.0) -> str:
    """Ask the broker at ``host:port`` whether it is ready; returns a one-line description.

    Raises :class:`ProbeError` (or OSError when nothing answers) when it is not: no answer,
    not Kafka, or the broker (``node_id``, default: any) not yet among the live brokers."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        version = _metadata_version(_request(sock, API_VERSIONS, 0, 1, b""))
        body = struct.pack(">i", 0) + b"\x00"  # no topics; do not create any
        if version >= 8:
            body += b"\x00\x00"  # no authorized-operations lists
        brokers, controller = _brokers(_request(sock, API_METADATA, version, 2, body))
    if not brokers:
        raise ProbeError("the broker answers but lists no live broker yet (still loading metadata)")
    if node_id is not None and node_id not in brokers:
        raise ProbeError(f"broker {node_id} is not among the live brokers {sorted(brokers)} yet")
    listed = ", ".join(f"{n}@{h}:{p}" for n, (h, p) in sorted(brokers.items()))
    return f"brokers {listed}; controller {controller}"


def ready(host: str, port: int, node_id: int | None = None, timeout_s: float = 2.0) -> tuple[bool, str]:
    """:func:`probe` as (ready, reason)."""
    try:
        return True, probe(host, port, node_id, timeout_s)
    except (ProbeError, OSError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
