from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import ResidualUnit
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck

from engine.models.contract import SEG_CLASSES
from engine.models.networks import (
    ClassifierConfig,
    SegmenterConfig,
    build_classifier,
    build_segmenter,
    count_parameters,
)

SIZE_BUDGET_BYTES = 25_000_000


@pytest.mark.parametrize("shape", [(1, 1, 32, 32, 48), (2, 1, 16, 48, 32)])
def test_default_segmenter_keeps_the_input_grid(shape):
    net = build_segmenter().eval()
    with torch.no_grad():
        out = net(torch.rand(*shape))
    assert out.shape == (shape[0], len(SEG_CLASSES), *shape[2:])


def test_segmenter_is_a_residual_unet_on_a_16_voxel_grid():
    config = SegmenterConfig()
    net = build_segmenter(config)
    assert config.grid_multiple == 16 and config.out_channels == 5
    assert any(isinstance(m, ResidualUnit) for m in net.modules())


def test_out_channels_follow_the_class_names():
    config = SegmenterConfig(channels=(4, 8), class_names=("background", "vertebral_body"))
    with torch.no_grad():
        out = build_segmenter(config).eval()(torch.rand(1, 1, 4, 6, 8))
    assert out.shape == (1, 2, 4, 6, 8) and config.grid_multiple == 2


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"class_names": ("vertebral_body", "background")}, "must start with 'background'"),
        ({"channels": (8,)}, "at least two levels"),
    ],
)
def test_segmenter_config_refuses_bad_shapes(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SegmenterConfig(**kwargs)


@pytest.mark.parametrize("depth, block", [(18, ResNetBlock), (34, ResNetBlock), (50, ResNetBottleneck)])
def test_every_resnet_depth_builds_and_has_both_heads(depth, block):
    config = ClassifierConfig(depth=depth, widths=(4, 4, 8, 8), crop_size=16)
    net = build_classifier(config).eval()
    blocks = [m for m in net.modules() if isinstance(m, (ResNetBlock, ResNetBottleneck))]
    assert blocks and all(isinstance(m, block) for m in blocks)
    assert len(blocks) == {18: 8, 34: 16, 50: 16}[depth]
    with torch.no_grad():
        fracture, grade = net(torch.rand(3, 1, 16, 16, 16))
    assert fracture.shape == (3, 1) and grade.shape == (3, 4)
    assert net.fracture_head.in_features == config.feature_size == (32 if depth == 50 else 8)


def test_both_heads_train_the_shared_trunk():
    net = build_classifier(ClassifierConfig(widths=(4, 4, 8, 8), crop_size=16))
    fracture, grade = net(torch.rand(2, 1, 16, 16, 16))
    (fracture.sum() + grade.sum()).backward()
    assert net.trunk.conv1.weight.grad is not None and net.trunk.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"depth": 101}, "not one of"),
        ({"crop_size": 24}, "multiple of 16"),
        ({"widths": (8, 16, 32)}, "four positive"),
        ({"stem_stride": 3}, "1 or 2"),
    ],
)
def test_classifier_config_refuses_bad_shapes(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ClassifierConfig(**kwargs)


def test_shipped_defaults_fit_the_size_budget():
    seg = count_parameters(build_segmenter())
    cls = count_parameters(build_classifier())
    # float32 weights; the ONNX files add only a few kB of graph on top.
    assert 4 * (seg + cls) < SIZE_BUDGET_BYTES / 2
    assert cls < seg  # the per-vertebra classifier must stay the cheap part
