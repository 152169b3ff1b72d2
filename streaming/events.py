"""StudyEvent: the message on ``ct.studies`` -- a pointer to a study, never its pixels.

An event names where the study can be read (a DICOMweb WADO-RS study URL or a ``file://``
folder) and which study it is. The worker parses every record with :func:`parse_event`;
a record that is not a valid event (bad JSON, a field missing or of the wrong type, a URL
that does not name the study, a key that differs from the UID) raises
:class:`PoisonEventError`, and the record goes to the dead-letter topic with that reason.

Reasons never repeat the record's content: pydantic's messages are rebuilt from the field
location and error kind only, and study identifiers go through :func:`engine.logs.study_ref`
(the UID itself only when ``logging.log_uids`` allows it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.errors import VcfScreenError
from engine.logs import study_ref

EVENT_SCHEMA_VERSION = "1.0"
SUPPORTED_MAJOR = "1"
_UID_CHARS = frozenset("0123456789.")


class PoisonEventError(VcfScreenError):
    """A record on the studies topic that is not a usable StudyEvent (it is dead-lettered)."""

    code = "invalid_event"

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _is_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and set(value) <= _UID_CHARS and not value.startswith(".")


class StudyEvent(BaseModel):
    """One study to screen (schema 1.x). Extra fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = EVENT_SCHEMA_VERSION
    """``major.minor``; the worker accepts any 1.x."""
    study_url: str = Field(min_length=1)
    """``http(s)://.../studies/<StudyInstanceUID>`` (DICOMweb WADO-RS) or ``file:///folder``."""
    study_instance_uid: str
    """The study; the key of its result."""
    accession_number: str | None = None
    """The order's accession number, passed along for the worklist (an identifier: never logged)."""
    priority: int = Field(default=0, ge=0, le=9)
    """0 routine .. 9 most urgent (informational in this version: the topic is processed in order)."""
    submitted_at: datetime
    """When the event was published (ISO 8601 with time zone)."""

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: str) -> str:
        if value.split(".", 1)[0] != SUPPORTED_MAJOR:
            raise ValueError(f"schema version {value[:16]!r} is not 1.x")
        return value

    @field_validator("study_instance_uid")
    @classmethod
    def _uid_syntax(cls, value: str) -> str:
        if not _is_uid(value):
            raise ValueError("not a DICOM UID (digits and dots, at most 64 characters)")
        return value

    @field_validator("study_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlparse(value).scheme
        if scheme not in ("http", "https", "file"):
            raise ValueError(f"URL scheme {scheme[:10]!r} is neither http(s) (DICOMweb) nor file")
        return value

    @property
    def location(self) -> StudyLocation:
        return StudyLocation.from_url(self.study_url)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


@dataclass(frozen=True)
class StudyLocation:
    """Where a study is read from: a local folder, or a DICOMweb root and the study UID."""

    folder: Path | None = None
    dicomweb_root: str | None = None
    study_uid_in_url: str | None = None

    @property
    def is_file(self) -> bool:
        return self.folder is not None

    @classmethod
    def from_url(cls, url: str) -> StudyLocation:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise PoisonEventError("invalid_event", f"file URL names a remote host ({parsed.netloc[:40]!r})")
            return cls(folder=Path(unquote(parsed.path)))
        parts = parsed.path.rstrip("/").split("/")
        if len(parts) < 2 or parts[-2] != "studies" or not parts[-1]:
            raise PoisonEventError(
                "invalid_event", "study_url is not a DICOMweb study URL (it must end in /studies/<StudyInstanceUID>)"
            )
        root = f"{parsed.scheme}://{parsed.netloc}{'/'.join(parts[:-2])}"
        return cls(dicomweb_root=root, study_uid_in_url=unquote(parts[-1]))


def _validation_reason(exc: ValidationError) -> str:
    """Field locations and error kinds, never the offending input (it may hold identifiers)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "event"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")


def parse_event(key: bytes | None, value: bytes | None) -> StudyEvent:
    """The StudyEvent in a record, or :class:`PoisonEventError` saying what is wrong."""
    if value is None:
        raise PoisonEventError("invalid_event", "the record has no value (tombstone)")
    try:
        data = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise PoisonEventError("invalid_json", "the record value is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise PoisonEventError(
            "invalid_json", f"the record value is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise PoisonEventError("invalid_event", f"the record value is a JSON {type(data).__name__}, not an object")
    try:
        event = StudyEvent.model_validate(data)
    except ValidationError as exc:
        raise PoisonEventError("invalid_event", _validation_reason(exc)) from None
    location = event.location
    if location.study_uid_in_url is not None and location.study_uid_in_url != event.study_instance_uid:
        raise PoisonEventError(
            "uid_mismatch",
            f"study_url names {study_ref(location.study_uid_in_url)} but study_instance_uid is "
            f"{study_ref(event.study_instance_uid)}",
        )
    if key is not None:
        text = key.decode("utf-8", errors="replace")
        if text != event.study_instance_uid:
            raise PoisonEventError(
                "uid_mismatch",
                f"record key {study_ref(text)} differs from study_instance_uid {study_ref(event.study_instance_uid)}",
            )
    return event


def now_utc() -> datetime:
    return datetime.now(UTC)


def event_for_folder(folder: Path, study_instance_uid: str, **fields) -> StudyEvent:
    """An event pointing at a local study folder (``file://`` URL of its absolute path)."""
    return StudyEvent(
        study_url=Path(folder).resolve().as_uri(), study_instance_uid=study_instance_uid,
        submitted_at=fields.pop("submitted_at", None) or now_utc(), **fields,
    )


def event_for_dicomweb(dicomweb_url: str, study_instance_uid: str, **fields) -> StudyEvent:
    """An event pointing at a study of a DICOMweb archive (its WADO-RS study URL)."""
    return StudyEvent(
        study_url=f"{dicomweb_url.rstrip('/')}/studies/{study_instance_uid}",
        study_instance_uid=study_instance_uid,
        submitted_at=fields.pop("submitted_at", None) or now_utc(), **fields,
    )
