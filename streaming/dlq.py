"""Dead-letter records: what could not become a result, with the reason and the original record.

A dead-letter record is keyed like the original record and its value is JSON::

    {"schema_version": "1.0", "code": "invalid_json", "message": "...",
     "original": {"topic": "ct.studies", "partition": 2, "offset": 41,
                  "key": "1.2.826...", "value_text": "..."},      # or "value_base64"
     "worker_id": "host-1234", "time": "2025-01-01T12:00:00+00:00",
     "study_instance_uid": "1.2.826..."}                           # when the event parsed

The original value is kept whole (text when it is UTF-8, base64 otherwise) so the event can
be replayed once the cause is fixed; the message names the problem without repeating the
record's content. Codes: ``invalid_json``, ``invalid_event``, ``uid_mismatch``,
``unknown_pacs`` (poison events); ``corrupt``, ``unsupported``, ``pacs_refused``,
``internal`` (studies that could not be decoded or screened: they also get an error result);
``transient`` (a dependency stayed unavailable past the retry bound: no result, replay it).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

DLQ_SCHEMA_VERSION = "1.0"
POISON_CODES = frozenset({"invalid_json", "invalid_event", "uid_mismatch", "unknown_pacs"})


@dataclass(frozen=True)
class DeadLetter:
    code: str
    message: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    worker_id: str
    study_instance_uid: str | None = None

    def to_json(self, now: datetime | None = None) -> bytes:
        original: dict[str, object] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": None if self.key is None else self.key.decode("utf-8", errors="replace"),
        }
        if self.value is not None:
            try:
                original["value_text"] = self.value.decode("utf-8")
            except UnicodeDecodeError:
                original["value_base64"] = base64.b64encode(self.value).decode("ascii")
        payload = {
            "schema_version": DLQ_SCHEMA_VERSION,
            "code": self.code,
            "message": self.message,
            "original": original,
            "worker_id": self.worker_id,
            "time": (now or datetime.now(UTC)).isoformat(),
        }
        if self.study_instance_uid is not None:
            payload["study_instance_uid"] = self.study_instance_uid
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def original_value(record: dict) -> bytes | None:
    """The original record value of a parsed dead-letter record (for replays and tests)."""
    original = record["original"]
    if "value_text" in original:
        return original["value_text"].encode("utf-8")
    if "value_base64" in original:
        return base64.b64decode(original["value_base64"])
    return None
