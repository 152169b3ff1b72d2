"""Fixtures of the preprocessing tests; the volume builders live in ``preprocess_volumes``."""

from __future__ import annotations

import pytest

from engine.preprocess import Preprocessor
from engine.settings import PreprocessSettings


@pytest.fixture(scope="module")
def cpu_settings() -> PreprocessSettings:
    return PreprocessSettings(device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def preprocessor(cpu_settings: PreprocessSettings) -> Preprocessor:
    return Preprocessor(cpu_settings)
