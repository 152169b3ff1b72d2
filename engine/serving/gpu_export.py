"""``vcfscreen export``: check the ONNX files against a profile, and build the GPU repository.

What needs no GPU runs everywhere (``onnx.checker``, metadata, every declared tensor against
the graph); the plans are built only where :func:`engine.serving.tensorrt_build.gpu_problem`
finds a GPU and TensorRT, and otherwise nothing is written and the reason is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigurationError
from engine.models.contract import CLS_MODEL, SEG_MODEL
from engine.serving.onnx_facts import (
    check_model,
    config_mismatches,
    graph_tensors,
    load_model,
    read_facts,
)
from engine.serving.repository import model_configs, write_repository
from engine.serving.spec import (
    GPU,
    GpuOptions,
    ModelFacts,
    cls_trt_profile,
    seg_trt_profile,
    specs_from_facts,
)
from engine.serving.tensorrt_build import PlanReport, build_plan, require_tensorrt


@dataclass(frozen=True)
class OnnxCheck:
    model: str
    path: Path
    tensors: int
    """Inputs and outputs compared with the profile's config."""


def check_onnx_for_profile(
    models_dir: Path, profile: str, facts: ModelFacts | None = None, gpu: GpuOptions | None = None
) -> list[OnnxCheck]:
    """``onnx.checker`` on both files, then every tensor the profile's configs declare against
    the graphs (names, element types, extents); raises ConfigurationError listing every mismatch."""
    facts = facts or read_facts(models_dir)
    configs = model_configs(profile, facts, gpu=gpu)
    checks, problems = [], []
    for name, weights in ((SEG_MODEL, facts.seg), (CLS_MODEL, facts.cls)):
        path = Path(models_dir) / weights.file_name
        model = load_model(path, name)
        check_model(model, str(path))
        inputs, outputs = graph_tensors(model)
        config = configs[name]
        for kind, declared, graph in (("inputs", config.input, inputs), ("outputs", config.output, outputs)):
            table = {t.name: (_dtype(t.data_type), tuple(t.dims)) for t in declared}
            problems += config_mismatches(name, config.max_batch_size, table, kind, graph)
        checks.append(OnnxCheck(name, path, len(inputs) + len(outputs)))
    if problems:
        raise ConfigurationError(f"the {profile} profile does not fit the ONNX models: " + "; ".join(problems))
    return checks


def _dtype(value: int) -> str:
    from tritonclient.grpc import model_config_pb2 as mc

    return mc.DataType.Name(value).removeprefix("TYPE_")


def export_tensorrt(models_dir: Path, out: Path, gpu: GpuOptions | None = None) -> list[PlanReport]:
    """Build both plans and write the GPU repository to ``out``; raises GpuUnavailableError
    (before writing anything) where there is no GPU or no TensorRT."""
    gpu = gpu or GpuOptions()
    require_tensorrt()
    facts = read_facts(models_dir)
    check_onnx_for_profile(models_dir, GPU, facts, gpu)
    specs = specs_from_facts(facts)
    profiles = {
        SEG_MODEL: seg_trt_profile(facts.seg.metadata.grid_multiple, gpu),
        CLS_MODEL: cls_trt_profile(facts.cls.metadata.crop_size, gpu),
    }
    files = {SEG_MODEL: facts.seg.file_name, CLS_MODEL: facts.cls.file_name}
    reports = [
        build_plan(
            Path(models_dir) / files[name], Path(out) / name / "1" / "model.plan", specs[name], profiles[name],
            fp16=gpu.fp16, workspace_mib=gpu.workspace_mib,
        )
        for name in (SEG_MODEL, CLS_MODEL)
    ]
    write_repository(GPU, out, facts, gpu=gpu)
    return reports
