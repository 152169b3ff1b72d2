"""Logging set-up: standard ``logging``, one line per event, optional JSON.

No protected health information is ever logged. Study identifiers go through
:func:`study_ref`, which returns the UID itself only when ``logging.log_uids`` is on and a
short, stable hash otherwise, so that log lines of one study can still be correlated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from datetime import datetime, timezone

from engine.settings import LoggingSettings

_LOG_UIDS = False

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def setup_logging(settings: LoggingSettings) -> None:
    """Configure the root logger once for a process (CLI command, worker, benchmark)."""
    global _LOG_UIDS
    _LOG_UIDS = settings.log_uids
    handler = logging.StreamHandler(sys.stderr)
    if settings.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Client libraries are chatty at INFO (every connection, every metadata refresh).
    for noisy in ("kafka", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def study_ref(uid: str | None) -> str:
    """How a study (or accession number) may appear in a log line."""
    if uid is None:
        return "-"
    if _LOG_UIDS:
        return uid
    return "study-" + hashlib.sha256(uid.encode()).hexdigest()[:12]
