"""Preprocess stage: the shared DALI pipeline turns the volume into the model grid, with its geometry."""

from __future__ import annotations

import numpy as np
import pytest
from streaming_fakes import StandInBackend, make_job, make_settings

from engine.errors import StudyError
from engine.screen import Screener
from streaming.stages import LoadStage, PreprocessStage


@pytest.fixture(scope="module")
def screener():
    return Screener(make_settings(), backend=StandInBackend())


def loaded_job(folder, uid):
    job = make_job(folder, uid)
    job.source = folder
    LoadStage(make_settings()).process(job)
    return job


def test_model_input_is_on_the_model_grid(screener, study_folders):
    job = loaded_job(*study_folders[0])
    stage = PreprocessStage(screener)
    runs = screener.preprocessor.runs
    stage.process(job)
    tensor = job.model_input.tensor
    assert tensor.dtype == np.float32 and all(extent % 16 == 0 for extent in tensor.shape)
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    # 60 slices 3 mm apart cover 177 mm: at 2 mm that is 89 slices of content.
    assert job.model_input.content_shape[0] == pytest.approx(89, abs=1)
    assert screener.preprocessor.runs == runs + 1, "the Screener's pipeline is reused, not rebuilt"
    assert job.timer.ms["preprocess"] > 0


def test_a_volume_that_cannot_be_preprocessed_raises_its_error(screener, study_folders):
    job = loaded_job(*study_folders[0])
    volume = job.loaded.volume
    oblique = volume.affine.copy()
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique[:3, :3] = rotation @ oblique[:3, :3]
    job.loaded.volume = type(volume)(hu=volume.hu, affine=oblique, study_instance_uid=volume.study_instance_uid,
                                     series_instance_uid=volume.series_instance_uid)
    with pytest.raises(StudyError):
        PreprocessStage(screener).process(job)
