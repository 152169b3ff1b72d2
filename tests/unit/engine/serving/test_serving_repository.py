"""The Triton repository generator: both profiles parse as Triton model configs, declare the
shapes of the ONNX models, agree with each other, and the checked-in repositories are its output."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import ConfigurationError
from engine.models.contract import CLS_MODEL, SEG_MODEL
from engine.serving.gpu_export import check_onnx_for_profile
from engine.serving.onnx_facts import GraphTensor, config_mismatches, read_facts
from engine.serving.repository import model_configs, repository_files
from engine.serving.spec import CPU, GPU, PIPELINE_MODEL, PROFILES
from engine.serving.tensorrt_build import gpu_problem
from engine.settings import ModelSettings

ROOT = Path(__file__).resolve().parents[4]
SERVED = (SEG_MODEL, CLS_MODEL, PIPELINE_MODEL)
runner = CliRunner()


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("profile", PROFILES)
def test_every_generated_config_parses_as_a_triton_model_config(tiny_models_dir, profile):
    facts = read_facts(tiny_models_dir)
    files = repository_files(profile, facts)
    configs = model_configs(profile, facts)
    assert sorted(p.split("/")[0] for p in files if p.endswith("config.pbtxt")) == sorted(SERVED)
    for name in SERVED:
        parsed = parse(files[f"{name}/config.pbtxt"])
        assert parsed == configs[name], name
        assert parsed.name == name


def test_cpu_profile_runs_onnx_runtime_in_the_python_backend(tiny_models_dir):
    facts = read_facts(tiny_models_dir)
    configs = {n: parse(t) for n, t in _configs(repository_files(CPU, facts)).items()}
    for name in SERVED:
        config = configs[name]
        assert config.backend == "python" and not config.platform
        assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    seg, cls = configs[SEG_MODEL], configs[CLS_MODEL]
    assert seg.parameters["intra_op_threads"].string_value == "2"
    assert cls.parameters["intra_op_threads"].string_value == "1"
    assert cls.dynamic_batching.preferred_batch_size == [cls.max_batch_size]
    assert not seg.HasField("dynamic_batching")  # volumes of different studies never batch
    assert seg.parameters["weights_sha256"].string_value == facts.seg.sha256
    assert cls.parameters["onnx_file"].string_value == "vertebra_cls.onnx"
    assert seg.parameters["models_dir"].string_value == ""  # resolved by the server
    assert configs[PIPELINE_MODEL].parameters["crop_size"].string_value == "16"
    files = repository_files(CPU, facts)
    assert "from engine.serving.python_models import PipelineModel as TritonPythonModel" in files[
        f"{PIPELINE_MODEL}/1/model.py"
    ]


def test_gpu_profile_declares_fp16_tensorrt_plans(tiny_models_dir):
    facts = read_facts(tiny_models_dir)
    files = repository_files(GPU, facts)
    configs = {n: parse(t) for n, t in _configs(files).items()}
    for name in (SEG_MODEL, CLS_MODEL):
        config = configs[name]
        assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
        assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
        assert config.parameters["precision"].string_value == "FP16"
        assert f"{name}/1/model.py" not in files
    g = facts.seg.metadata.grid_multiple
    seg_profile = configs[SEG_MODEL].parameters["trt_profile_min_opt_max"].string_value
    assert seg_profile == f"1x1x{g}x{g}x{g};1x1x320x192x192;1x1x512x320x320"
    assert configs[CLS_MODEL].parameters["trt_profile_min_opt_max"].string_value == "1x1x16x16x16;16x1x16x16x16;32x1x16x16x16"
    assert list(configs[CLS_MODEL].dynamic_batching.preferred_batch_size) == [16, 32]
    assert configs[PIPELINE_MODEL].backend == "python"


def test_both_profiles_declare_the_same_models(tiny_models_dir):
    facts = read_facts(tiny_models_dir)
    cpu, gpu = model_configs(CPU, facts), model_configs(GPU, facts)
    for name in SERVED:
        assert cpu[name].input == gpu[name].input and cpu[name].output == gpu[name].output, name
        assert cpu[name].max_batch_size == gpu[name].max_batch_size
        for key in ("weights_version", "weights_sha256", "class_names"):
            assert cpu[name].parameters.get(key) == gpu[name].parameters.get(key)


@pytest.mark.parametrize("profile", PROFILES)
def test_declared_shapes_match_the_onnx_models(tiny_models_dir, profile):
    checks = check_onnx_for_profile(tiny_models_dir, profile)
    assert [(c.model, c.tensors) for c in checks] == [(SEG_MODEL, 2), (CLS_MODEL, 3)]


def test_a_config_that_does_not_fit_the_graph_is_named_with_both_sides():
    graph = [GraphTensor("crops", "FP32", (-1, 1, 16, 16, 16))]
    assert config_mismatches("vertebra_cls", 32, {"crops": ("FP32", (1, 16, 16, 16))}, "inputs", graph) == []
    wrong = config_mismatches("vertebra_cls", 32, {"crops": ("FP32", (1, 24, 24, 24))}, "inputs", graph)
    assert len(wrong) == 3 and "is 24 in the config" in wrong[0] and "but 16 in the ONNX graph" in wrong[0]
    dtype = config_mismatches("vertebra_cls", 32, {"crops": ("FP16", (1, 16, 16, 16))}, "inputs", graph)
    assert dtype == ["vertebra_cls: input 'crops' is FP16 in the config, FP32 in the ONNX graph"]
    fixed_graph = [GraphTensor("volume", "FP32", (-1, 1, 64, 64, 64))]
    dynamic = config_mismatches("vertebra_seg", 1, {"volume": ("FP32", (1, -1, -1, -1))}, "inputs", fixed_graph)
    assert len(dynamic) == 3  # Triton would accept any extent that the graph cannot take
    names = config_mismatches("vertebra_seg", 1, {"image": ("FP32", (1, -1, -1, -1))}, "inputs", fixed_graph)
    assert names == ["vertebra_seg: the config declares inputs ['image'] but the ONNX graph has ['volume']"]


def test_a_wrong_onnx_file_is_refused(tiny_models_dir, tmp_path):
    (tmp_path / "vertebra_seg.onnx").write_bytes((tiny_models_dir / "vertebra_cls.onnx").read_bytes())
    (tmp_path / "vertebra_cls.onnx").write_bytes((tiny_models_dir / "vertebra_cls.onnx").read_bytes())
    with pytest.raises(ConfigurationError, match="holds the model 'vertebra_cls', expected the 'vertebra_seg' model"):
        read_facts(tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_facts(tmp_path / "nowhere")


@pytest.mark.parametrize("profile", PROFILES)
def test_checked_in_repository_is_the_generator_output(profile):
    models_dir = ModelSettings().dir
    facts = read_facts(models_dir)  # the shipped, trained models: a missing one fails here, naming it
    expected = repository_files(profile, facts)
    repo = ROOT / "triton_models" / profile
    present = {
        str(p.relative_to(repo))
        for name in SERVED
        for p in (repo / name).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".plan"
    }
    assert present == set(expected), f"regenerate with `vcfscreen triton-repo --profile {profile} {repo.relative_to(ROOT)}`"
    for relative, text in expected.items():
        assert (repo / relative).read_text() == text, (
            f"{relative} differs from the generator's output: `vcfscreen triton-repo --profile {profile} "
            f"{repo.relative_to(ROOT)}`"
        )


def test_triton_repo_command_writes_the_repository(tiny_models_dir, tmp_path):
    result = runner.invoke(
        app, ["triton-repo", str(tmp_path / "repo"), "--profile", "cpu", "--models-dir", str(tiny_models_dir), "--pin-models-dir"]
    )
    assert result.exit_code == 0, result.output
    config = parse((tmp_path / "repo" / SEG_MODEL / "config.pbtxt").read_text())
    assert config.parameters["models_dir"].string_value == str(tiny_models_dir.resolve())
    assert (tmp_path / "repo" / CLS_MODEL / "1" / "model.py").is_file()
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
    assert as_json["parameters"]["weights_version"]["string_value"] == "unit-1"


def test_triton_repo_command_refuses_missing_models_and_unknown_profiles(tmp_path):
    missing = runner.invoke(app, ["triton-repo", str(tmp_path / "repo"), "--models-dir", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "vertebra_seg.onnx does not exist" in missing.output
    unknown = runner.invoke(app, ["triton-repo", str(tmp_path / "repo"), "--profile", "tpu", "--models-dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "must be one of cpu, gpu" in unknown.output
    assert not (tmp_path / "repo").exists()


def test_export_checks_the_onnx_models_against_both_profiles(tiny_models_dir):
    result = runner.invoke(app, ["export", "--models-dir", str(tiny_models_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.count("passes onnx.checker") == 4  # two models x two profiles


def test_export_tensorrt_without_a_gpu_stops_with_exit_2_saying_what_it_needs(tiny_models_dir, tmp_path):
    if gpu_problem() is None:
        pytest.skip("this machine has an NVIDIA GPU and TensorRT: test_tensorrt_plans_are_built covers it")
    result = runner.invoke(app, ["export", "--tensorrt", "--models-dir", str(tiny_models_dir), "--out", str(tmp_path / "gpu")])
    assert result.exit_code == 2
    assert "TensorRT plans not built" in result.output and "NVIDIA GPU" in result.output
    assert "pip install vcfscreen[gpu]" in result.output
    assert not (tmp_path / "gpu").exists()  # nothing half-written


@pytest.mark.gpu
def test_tensorrt_plans_are_built(tiny_models_dir, tmp_path):
    problem = gpu_problem()
    if problem is not None:
        pytest.skip(f"no NVIDIA GPU / TensorRT: plans not built ({problem})")
    from engine.serving.gpu_export import export_tensorrt

    reports = export_tensorrt(tiny_models_dir, tmp_path / "gpu")
    assert [r.path.name for r in reports] == ["model.plan", "model.plan"]
    assert all(r.size_bytes > 0 for r in reports)
    assert (tmp_path / "gpu" / SEG_MODEL / "config.pbtxt").is_file()


def _configs(files: dict[str, str]) -> dict[str, str]:
    return {path.split("/")[0]: text for path, text in files.items() if path.endswith("config.pbtxt")}
