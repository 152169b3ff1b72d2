"""Tiny exported models for the serving tests, written once into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.models.export import export_classifier, export_segmenter
from engine.models.networks import (
    ClassifierConfig,
    SegmenterConfig,
    build_classifier,
    build_segmenter,
)

SEG_CONFIG = SegmenterConfig(channels=(4, 8, 8), num_res_units=0)
CLS_CONFIG = ClassifierConfig(depth=18, widths=(4, 4, 8, 8), crop_size=16)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serving_models")
    torch.manual_seed(11)
    seg, cls = build_segmenter(SEG_CONFIG).eval(), build_classifier(CLS_CONFIG).eval()
    export_segmenter(seg, SEG_CONFIG, folder / "vertebra_seg.onnx", version="unit-1", check_shapes=((1, 1, 8, 8, 12),))
    export_classifier(cls, CLS_CONFIG, folder / "vertebra_cls.onnx", version="unit-1", check_batches=(2,))
    return folder
