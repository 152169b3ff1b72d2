"""Fixtures of the phantom tests: small studies generated once per session."""

from __future__ import annotations

import pytest
from phantom_configs import QUIET, tiny_config

from engine.phantom import PhantomConfig, PhantomStudy, PlantedFracture, generate_study


@pytest.fixture(scope="session")
def fracture_studies() -> dict[str, PhantomStudy]:
    """T12-L2 on a fine grid (1.1 mm pixels, 0.8 mm slices) with three planted fractures,
    head-first and feet-first."""
    fractures = (
        PlantedFracture(level="T12", morphology="wedge", grade=3, height_loss=0.5),
        PlantedFracture(level="L1", morphology="biconcave", grade=2, height_loss=0.32),
        PlantedFracture(level="L2", morphology="crush", grade=3, height_loss=0.48),
    )
    studies = {}
    for position, seed in (("HFS", 21), ("FFS", 22)):
        config = PhantomConfig(matrix=320, spacing_choices_mm=(0.8,), slices_min=20, slices_max=400,
                               fov_levels=("T12", "L2"), fractures=fractures, position=position,
                               noise_scale=0.0, **QUIET)
        studies[position] = generate_study(seed, config)
    return studies


@pytest.fixture(scope="session")
def full_study() -> PhantomStudy:
    """A whole small trunk with every extra series."""
    return generate_study(31, tiny_config(scout_probability=1.0, thick_series_probability=1.0,
                                          sagittal_series_probability=1.0))
