"""Load stage: the screening series decoded, the study identity checked, the instances released."""

from __future__ import annotations

import pydicom
import pytest
from streaming_fakes import make_job, make_settings

from engine.errors import CorruptStudyError, NotEligibleError
from engine.settings import Settings
from streaming.stages import LoadStage, StudyMismatchError


def test_a_folder_becomes_a_volume_and_the_source_is_released(study_folders):
    folder, uid = study_folders[0]
    job = make_job(folder, uid)
    job.source = folder
    LoadStage(make_settings()).process(job)
    assert job.loaded.study_instance_uid == uid
    assert job.loaded.volume.hu.shape == (60, 32, 32)
    assert job.source is None and job.sr_source is None
    assert job.timer.ms["load"] > 0


def test_instances_fetched_over_dicomweb_load_the_same(study_folders):
    folder, uid = study_folders[1]
    job = make_job(folder, uid)
    job.source = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    LoadStage(Settings(pacs={"write_back": True})).process(job)
    assert job.loaded.volume.hu.shape == (60, 32, 32)
    assert job.sr_source is not None and len(job.sr_source.instances) == 60
    assert job.sr_source.header.get("PixelData") is None


def test_images_of_another_study_are_a_mismatch(study_folders):
    folder, _uid = study_folders[0]
    job = make_job(folder, "1.2.826.0.1.3680043.8.498.1")
    job.source = folder
    with pytest.raises(StudyMismatchError, match="belong to study-"):
        LoadStage(make_settings()).process(job)


def test_bad_studies_raise_their_typed_error(corrupt_folder, short_folder):
    for (folder, uid), error in ((corrupt_folder, CorruptStudyError), (short_folder, NotEligibleError)):
        job = make_job(folder, uid)
        job.source = folder
        with pytest.raises(error):
            LoadStage(make_settings()).process(job)
