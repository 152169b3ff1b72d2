"""Tiny exported models for the backend tests, written once into a temporary folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from engine.models.export import export_classifier, export_segmenter
from engine.models.networks import ClassifierConfig, SegmenterConfig, build_classifier, build_segmenter
from engine.settings import ModelSettings

SEG_CONFIG = SegmenterConfig(channels=(4, 8, 16), num_res_units=1)
CLS_CONFIG = ClassifierConfig(depth=18, widths=(4, 4, 8, 8), crop_size=16)


@dataclass
class TinyModels:
    dir: Path
    seg_net: torch.nn.Module
    cls_net: torch.nn.Module

    def settings(self, **overrides) -> ModelSettings:
        values = {"dir": self.dir, "crop_size": CLS_CONFIG.crop_size, "intra_op_threads": 1, **overrides}
        return ModelSettings(**values)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(7)
    seg, cls = build_segmenter(SEG_CONFIG).eval(), build_classifier(CLS_CONFIG).eval()
    export_segmenter(seg, SEG_CONFIG, folder / "vertebra_seg.onnx", version="test-1", check_shapes=((1, 1, 8, 8, 12),))
    export_classifier(cls, CLS_CONFIG, folder / "vertebra_cls.onnx", version="test-1", check_batches=(1,))
    return TinyModels(dir=folder, seg_net=seg, cls_net=cls)
