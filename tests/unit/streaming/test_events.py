"""StudyEvent parsing: what is accepted, and what is refused with which code and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streaming.events import (
    PoisonEventError,
    StudyEvent,
    event_for_dicomweb,
    event_for_folder,
    parse_event,
)

UID = "1.2.826.0.1.3680043.8.498.12345"
ROOT = "http://127.0.0.1:8042/dicom-web"


def raw(**fields) -> bytes:
    data = {"study_url": f"{ROOT}/studies/{UID}", "study_instance_uid": UID,
            "submitted_at": "2025-03-01T08:00:00+00:00", **fields}
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


def test_a_dicomweb_event_round_trips():
    event = event_for_dicomweb(ROOT + "/", UID, accession_number="ACC-1", priority=3)
    parsed = parse_event(UID.encode(), event.to_bytes())
    assert parsed == event
    assert parsed.location.dicomweb_root == ROOT and parsed.location.study_uid_in_url == UID
    assert parsed.schema_version == "1.0"


def test_a_file_event_points_at_the_absolute_folder(tmp_path):
    event = event_for_folder(tmp_path / "a b", UID)
    assert event.study_url.startswith("file:///")
    assert parse_event(None, event.to_bytes()).location.folder == (tmp_path / "a b").resolve()


@pytest.mark.parametrize("value, code, words", [
    (b"\xff\xfe", "invalid_json", "not UTF-8"),
    (b"{bad", "invalid_json", "line 1 column 2"),
    (b"[1, 2]", "invalid_event", "JSON list"),
    (raw(study_instance_uid=None), "invalid_event", "study_instance_uid: Field required"),
    (raw(priority=12), "invalid_event", "priority: Input should be less than or equal to 9"),
    (raw(schema_version="2.0"), "invalid_event", "is not 1.x"),
    (raw(study_url="ftp://pacs/x"), "invalid_event", "neither http(s)"),
    (raw(study_url=f"{ROOT}/series/{UID}"), "invalid_event", "must end in /studies/"),
    (raw(study_url=f"{ROOT}/studies/1.2.3"), "uid_mismatch", "study_url names"),
    (raw(colour="blue"), "invalid_event", "colour: Extra inputs are not permitted"),
    (None, "invalid_event", "tombstone"),
])
def test_poison_records_are_refused_with_a_code(value, code, words):
    with pytest.raises(PoisonEventError) as caught:
        parse_event(None, value)
    assert caught.value.code == code
    assert words in caught.value.message


def test_the_key_must_be_the_study_uid():
    with pytest.raises(PoisonEventError) as caught:
        parse_event(b"1.2.3.4", raw())
    assert caught.value.code == "uid_mismatch"
    assert parse_event(UID.encode(), raw()).study_instance_uid == UID


def test_reasons_never_repeat_the_record_content():
    secret = "PHANTOM^SECRET"
    for value in (raw(accession_number={"name": secret}), raw(study_instance_uid=secret), raw(submitted_at=secret)):
        with pytest.raises(PoisonEventError) as caught:
            parse_event(None, value)
        assert secret not in caught.value.message


def test_uids_in_reasons_are_hashed_unless_configured():
    with pytest.raises(PoisonEventError) as caught:
        parse_event(b"1.2.3.4", raw())
    assert UID not in caught.value.message and "study-" in caught.value.message


def test_remote_file_urls_are_refused():
    with pytest.raises(PoisonEventError):
        _ = StudyEvent.model_validate_json(raw(study_url="file://fileserver/share/x")).location
    assert Path("/x") == StudyEvent.model_validate_json(raw(study_url="file:///x")).location.folder
