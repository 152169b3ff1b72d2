"""The Python-backend model classes, driven by a stand-in for Triton's ``triton_python_backend_utils``
(the real stub only exists inside tritonserver: tests/integration runs them there)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format

from engine.infer.onnx_backend import OnnxBackend
from engine.models.contract import CLS_MODEL, SEG_MODEL
from engine.serving import spec as s
from engine.serving.onnx_facts import read_facts
from engine.serving.pipeline_core import decode
from engine.serving.python_models import (
    OnnxRuntimeModel,
    PipelineModel,
    resolve_models_dir,
)
from engine.serving.repository import model_configs
from engine.settings import ModelSettings


class FakeTensor:
    def __init__(self, name, array):
        self.name, self.array = name, np.asarray(array)

    def as_numpy(self):
        return self.array

    def is_cpu(self):
        return True


class FakeResponse:
    def __init__(self, output_tensors=(), error=None):
        self.output_tensors, self.error_value = list(output_tensors), error

    def has_error(self):
        return self.error_value is not None

    def error(self):
        return self.error_value


class FakeError:
    def __init__(self, message):
        self.text = message

    def message(self):
        return self.text


class FakeRequest:
    def __init__(self, inputs):
        self.inputs = inputs


class ModelException(Exception):
    pass


@pytest.fixture()
def pb(monkeypatch):
    """A stand-in module with the calls the models make; BLS requests go to ``pb.models``."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor
    module.InferenceResponse = FakeResponse
    module.TritonError = FakeError
    module.TritonModelException = ModelException
    module.models = {}

    def by_name(holder, name):
        items = holder.inputs if isinstance(holder, FakeRequest) else holder.output_tensors
        return next((t for t in items if t.name == name), None)

    class InferenceRequest:
        def __init__(self, model_name, inputs, requested_output_names):
            self.model_name, self.inputs, self.names = model_name, inputs, requested_output_names

        def exec(self):
            (response,) = module.models[self.model_name].execute([FakeRequest(self.inputs)])
            return response

    module.get_input_tensor_by_name = by_name
    module.get_output_tensor_by_name = by_name
    module.InferenceRequest = InferenceRequest
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def args_for(config, repository="/nonexistent/repo") -> dict:
    as_json = json_format.MessageToJson(config, preserving_proto_field_name=True)
    return {"model_config": as_json, "model_repository": f"{repository}/{config.name}", "model_version": "1"}


@pytest.fixture()
def served(pb, tiny_models_dir):
    configs = model_configs(s.CPU, read_facts(tiny_models_dir), models_dir=str(tiny_models_dir))
    for name, cls in ((SEG_MODEL, OnnxRuntimeModel), (CLS_MODEL, OnnxRuntimeModel), (s.PIPELINE_MODEL, PipelineModel)):
        model = cls()
        model.initialize(args_for(configs[name]))
        pb.models[name] = model
    return pb.models


def test_onnx_model_answers_like_the_in_process_backend_and_batches_requests(served, tiny_models_dir):
    local = OnnxBackend(ModelSettings(dir=tiny_models_dir, crop_size=16, intra_op_threads=1))
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 1, 16, 16, 16), dtype=np.float32), rng.random((3, 1, 16, 16, 16), dtype=np.float32)
    responses = served[CLS_MODEL].execute([FakeRequest([FakeTensor("crops", a)]), FakeRequest([FakeTensor("crops", b)])])
    for crops, response in zip((a, b), responses):
        assert not response.has_error()
        logit = response.output_tensors[0].as_numpy()
        assert logit.shape == (len(crops), 1)
        (want, _) = local._cls.session.run(None, {"crops": crops})
        np.testing.assert_allclose(logit, want, atol=1e-6)


def test_a_bad_request_gets_an_error_and_the_others_are_served(served):
    good = np.zeros((1, 1, 16, 16, 16), np.float32)
    bad = good.copy()
    bad[0, 0, 3, 3, 3] = np.nan
    responses = served[CLS_MODEL].execute([FakeRequest([FakeTensor("crops", bad)]), FakeRequest([FakeTensor("crops", good)])])
    assert responses[0].has_error() and "NaN" in responses[0].error().message()
    assert not responses[1].has_error()


def test_pipeline_model_serves_a_study_and_refuses_off_grid_volumes(served):
    volume = np.random.default_rng(2).random((16, 16, 32), dtype=np.float32)
    spacing = np.array([2.0, 2.0, 2.0])
    (ok,) = served[s.PIPELINE_MODEL].execute([FakeRequest([FakeTensor("volume", volume), FakeTensor("spacing_mm", spacing)])])
    assert not ok.has_error(), ok.error_value and ok.error().message()
    reading = decode({t.name: t.as_numpy() for t in ok.output_tensors})
    assert reading.class_map.shape == volume.shape
    (off_grid,) = served[s.PIPELINE_MODEL].execute([FakeRequest([FakeTensor("volume", volume[:, :, :30]), FakeTensor("spacing_mm", spacing)])])
    assert "not a multiple of the segmentation grid 4" in off_grid.error().message()
    (bad_spacing,) = served[s.PIPELINE_MODEL].execute([FakeRequest([FakeTensor("volume", volume), FakeTensor("spacing_mm", -spacing)])])
    assert "spacing_mm must be 3 positive" in bad_spacing.error().message()


def test_missing_or_foreign_onnx_file_fails_loading_with_the_reason(pb, tiny_models_dir, tmp_path):
    config = model_configs(s.CPU, read_facts(tiny_models_dir), models_dir=str(tmp_path))[SEG_MODEL]
    with pytest.raises(ModelException, match="vertebra_seg.onnx does not exist"):
        OnnxRuntimeModel().initialize(args_for(config))
    (tmp_path / "vertebra_seg.onnx").write_bytes((tiny_models_dir / "vertebra_seg.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelException, match="regenerate it with `vcfscreen triton-repo"):
        OnnxRuntimeModel().initialize(args_for(config))


def test_a_pipeline_config_without_the_hu_window_says_to_regenerate_it(pb, tiny_models_dir):
    config = model_configs(s.CPU, read_facts(tiny_models_dir), models_dir=str(tiny_models_dir))[s.PIPELINE_MODEL]
    del config.parameters["hu_window"]
    with pytest.raises(ModelException, match="no hu_window parameter: regenerate"):
        PipelineModel().initialize(args_for(config))


def test_models_dir_is_the_parameter_then_the_environment_then_the_package(monkeypatch, tmp_path):
    assert resolve_models_dir(str(tmp_path), "/repo/vertebra_seg") == tmp_path
    assert resolve_models_dir("../weights", "/repo/vertebra_seg") == Path("/repo/weights")
    monkeypatch.setenv("VCF_MODELS__DIR", str(tmp_path))
    assert resolve_models_dir("", "/repo/vertebra_seg") == tmp_path
    monkeypatch.delenv("VCF_MODELS__DIR")
    assert resolve_models_dir("", "/repo/vertebra_seg") == ModelSettings().dir.resolve()
