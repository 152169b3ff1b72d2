"""Fixtures of the engine.dicom tests: small settings that the 40-slice factory series pass."""

from __future__ import annotations

import pytest

from engine.settings import SelectionSettings


@pytest.fixture
def settings() -> SelectionSettings:
    """Selection rules scaled to the factory's 40 x 2.5 mm series (97.5 mm of coverage)."""
    return SelectionSettings(min_slices=10, min_coverage_mm=50.0, decode_threads=2)
