"""vcfscreen submit against the real PACS and broker: STOW-RS upload and the QIDO-RS archive replay."""

from __future__ import annotations

import json

import pytest
import streaming_it
from streaming_it import read_records
from typer.testing import CliRunner

from engine.cli import app
from streaming.events import parse_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Fixtures shared by the streaming integration tests.
topics = streaming_it.topics
phantom_studies = streaming_it.phantom_studies


def test_store_to_pacs_then_replay_the_archive(topics, pacs, phantom_studies, monkeypatch, tmp_path):
    settings = topics("submit")
    monkeypatch.setenv("VCF_KAFKA__BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("VCF_KAFKA__STUDIES_TOPIC", settings.studies_topic)
    monkeypatch.setenv("VCF_PACS__DICOMWEB_URL", pacs.dicomweb_url)
    folder = tmp_path / "two"
    folder.mkdir()
    for study, _uid in phantom_studies[:2]:
        (folder / study.name).symlink_to(study, target_is_directory=True)
    runner = CliRunner()

    stored = runner.invoke(app, ["submit", str(folder), "--store-to-pacs", "--rate", "50"])
    assert stored.exit_code == 0, stored.output
    replay_topic = settings.studies_topic + "-replay"
    replay = runner.invoke(app, ["submit", "--from-pacs", "--rate", "200", "--topic", replay_topic])
    assert replay.exit_code == 0, replay.output
    count = int(replay.output.strip().splitlines()[-1].split()[1])

    wanted = {uid for _f, uid in phantom_studies[:2]}
    stored_records = read_records(settings, settings.studies_topic, lambda rs: len(rs) >= 2, 60)
    first = [parse_event(r.key, r.value) for r in stored_records]
    assert {e.study_instance_uid for e in first} == wanted
    records = read_records(settings, replay_topic, lambda rs: len(rs) >= count, 60)
    events = [parse_event(r.key, r.value) for r in records]
    replayed = {e.study_instance_uid for e in events}
    assert wanted <= replayed and len(replayed) == count == len(events)
    assert all(e.study_url == f"{pacs.dicomweb_url}/studies/{e.study_instance_uid}" for e in first + events)
    assert json.loads(records[0].value)["schema_version"] == "1.0"
