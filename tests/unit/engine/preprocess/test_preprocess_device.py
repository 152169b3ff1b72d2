"""Choosing the DALI device, and the GPU pipeline where a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
from preprocess_volumes import make_volume, smooth_field

from engine.errors import ConfigurationError
from engine.preprocess import Preprocessor
from engine.preprocess import pipeline as pipeline_module
from engine.settings import PreprocessSettings


def test_auto_uses_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(pipeline_module, "cuda_device_count", lambda: 0)
    assert pipeline_module.resolve_device("auto") == "cpu"
    assert pipeline_module.resolve_device("cpu") == "cpu"


def test_auto_uses_the_gpu_when_one_is_visible(monkeypatch):
    monkeypatch.setattr(pipeline_module, "cuda_device_count", lambda: 1)
    assert pipeline_module.resolve_device("auto") == "gpu"
    assert pipeline_module.resolve_device("cpu") == "cpu"


def test_gpu_requested_without_one_is_a_configuration_error(monkeypatch):
    monkeypatch.setattr(pipeline_module, "cuda_device_count", lambda: 0)
    with pytest.raises(ConfigurationError, match="no CUDA device"):
        pipeline_module.resolve_device("gpu")


def test_device_probe_never_raises():
    """On this machine it answers 0 or more; where CUDA is broken it must answer 0."""
    assert pipeline_module.cuda_device_count() >= 0


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_graph_is_placed_on_the_requested_device(device):
    """Declaring the graph needs no GPU (building it does): every step after the volume's
    transfer runs on the requested device, and the output is the model tensor on it."""
    from nvidia.dali.pipeline import Pipeline

    unbuilt = Pipeline(batch_size=2, num_threads=1, device_id=0 if device == "gpu" else None)
    with unbuilt:
        output = pipeline_module.define_graph(device, (-200.0, 1200.0), 16)
    placed: dict[str, str] = {}
    pending = [output]
    while pending:
        node = pending.pop()
        if node.source is not None:
            placed[node.source.name] = node.device
            pending.extend(node.source.inputs)
    operators = {name.strip("_").split("_")[0]: dev for name, dev in placed.items()}
    assert operators["Resize"] == operators["ArithmeticGenericOp"] == operators["Pad"] == device
    assert placed["volume"] == device  # the volume as the resize receives it
    assert placed["size"] == placed["roi_start"] == placed["roi_end"] == "cpu"  # arguments


@pytest.mark.gpu
def test_gpu_pipeline_matches_the_cpu_pipeline():
    """The same graph on the GPU gives the CPU result within 1e-4 (normalised units)."""
    if pipeline_module.cuda_device_count() == 0:
        pytest.skip("no CUDA device: DALI GPU pipeline not run")
    volumes = [
        make_volume((40, 64, 64), smooth_field, slice_step=(0, 0, -1.25), noise_hu=30.0),
        make_volume((30, 50, 70), smooth_field, row_cosine=(-1, 0, 0), pixel_spacing=(0.8, 0.9)),
    ]
    on_gpu = Preprocessor(PreprocessSettings(device="gpu"))
    assert on_gpu.device == "gpu"
    on_cpu = Preprocessor(PreprocessSettings(device="cpu"))
    for gpu_result, cpu_result in zip(on_gpu(volumes), on_cpu(volumes), strict=True):
        np.testing.assert_allclose(gpu_result.affine, cpu_result.affine)
        assert gpu_result.tensor.shape == cpu_result.tensor.shape
        assert np.abs(gpu_result.tensor - cpu_result.tensor).max() <= 1e-4
