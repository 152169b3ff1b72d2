from __future__ import annotations

import pytest

from engine.errors import ConfigurationError
from engine.models.contract import SEG_CLASSES, ModelMetadata

META = ModelMetadata(
    model="vertebra_seg",
    architecture="monai.UNet",
    depth=5,
    widths=(8, 16, 32, 64, 128),
    version="2025.1",
    input_spacing_mm=(2.0, 2.0, 2.0),
    hu_window=(-200.0, 1200.0),
    class_names=SEG_CLASSES,
    grid_multiple=16,
)


def test_metadata_round_trips_through_string_props():
    props = META.to_props()
    assert all(key.startswith("vcf.") and isinstance(value, str) for key, value in props.items())
    assert props["vcf.input_spacing_mm"] == "2.0,2.0,2.0"
    assert ModelMetadata.from_props(props, "m.onnx") == META


def test_missing_keys_are_named_with_the_file():
    props = META.to_props()
    del props["vcf.hu_window"]
    with pytest.raises(ConfigurationError, match=r"m\.onnx lacks the metadata vcf\.hu_window"):
        ModelMetadata.from_props(props, "m.onnx")


@pytest.mark.parametrize(
    "key, value, pattern",
    [
        ("vcf.format", "9", "format '9'"),
        ("vcf.depth", "deep", "vcf.depth='deep' is malformed"),
        ("vcf.input_spacing_mm", "2.0,2.0", "needs 3 values"),
        ("vcf.class_names", "background,,sacrum", "non-empty"),
    ],
)
def test_bad_values_are_configuration_errors(key, value, pattern):
    props = {**META.to_props(), key: value}
    with pytest.raises(ConfigurationError, match=pattern):
        ModelMetadata.from_props(props, "m.onnx")
