from __future__ import annotations

import json
import logging

from engine import logs
from engine.settings import LoggingSettings

UID = "1.2.826.0.1.3680043.8.498.12345678901234567890"


def emit(capsys, settings: LoggingSettings, **extra) -> str:
    logs.setup_logging(settings)
    logging.getLogger("vcfscreen.test").info("screened %s", logs.study_ref(UID), extra=extra)
    return capsys.readouterr().err.strip()


def test_json_format_one_object_per_line_with_extra_fields(capsys):
    line = emit(capsys, LoggingSettings(json_format=True), stage="infer", duration_ms=12.5)
    record = json.loads(line)
    assert record["level"] == "INFO" and record["logger"] == "vcfscreen.test"
    assert record["stage"] == "infer" and record["duration_ms"] == 12.5
    assert "\n" not in line


def test_uids_are_hashed_unless_configured(capsys):
    hidden = emit(capsys, LoggingSettings())
    assert UID not in hidden and "study-" in hidden
    # The same study always gets the same reference, so its lines can be correlated.
    assert logs.study_ref(UID) == logs.study_ref(UID) != logs.study_ref(UID + "1")
    shown = emit(capsys, LoggingSettings(log_uids=True))
    assert UID in shown
    logs.setup_logging(LoggingSettings())  # back to the safe default for other tests
