"""Small phantom configurations shared by the phantom tests (imported by name, not via conftest)."""

from __future__ import annotations

from engine.phantom import PhantomConfig

QUIET = {"scout_probability": 0.0, "thick_series_probability": 0.0, "sagittal_series_probability": 0.0}
"""No extra series: only the screening series is rendered."""


def tiny_config(**overrides: object) -> PhantomConfig:
    """A whole trunk on a 64 matrix with 4-5 mm slices: enough for geometry and DICOM checks."""
    values: dict[str, object] = {"matrix": 64, "slices_min": 60, "slices_max": 200, "spacing_choices_mm": (4.0, 5.0)}
    values.update(overrides)
    return PhantomConfig(**values)
