"""One synthetic study, written as DICOM and screened once, shared by the report tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.screen import Screener, StudyOutput
from engine.settings import Settings
from tests.unit.engine.report.report_spine_study import (
    IntensityBackend,
    SpineStudy,
    spine_volume,
    write_spine_series,
)


@dataclass
class ScreenedStudy:
    study: SpineStudy
    folder: Path
    output: StudyOutput


@pytest.fixture(scope="session")
def screened(tmp_path_factory) -> ScreenedStudy:
    """T9..L5 with a 60% anterior wedge at L1 (which the stand-in classifier calls a fracture)
    and a lateral curve, screened end to end."""
    study = spine_volume(wedge_level="L1", loss=0.6, lateral_shift=6.0)
    folder = write_spine_series(study, tmp_path_factory.mktemp("study") / "dicom")
    output = Screener(Settings(), backend=IntensityBackend(fractured=frozenset({"L1"}))).screen(folder, study_hint="study")
    if output.result.status != "ok":
        raise RuntimeError(f"the synthetic study did not screen: {output.result.reason}")
    return ScreenedStudy(study=study, folder=folder, output=output)
