"""Write a Triton model repository: the ``cpu`` profile (runs here) or the ``gpu`` profile.

Both profiles come from one source of truth, :mod:`engine.serving.spec` plus the ONNX
metadata (:class:`~engine.serving.spec.ModelFacts`), and are rendered through Triton's own
``ModelConfig`` protobuf, so every file parses as a model config by construction and the
two profiles cannot disagree on a name, a shape, a dtype or a version.

``cpu``: ``vertebra_seg`` and ``vertebra_cls`` are Python-backend models running ONNX Runtime
with explicit thread counts (KIND_CPU instances, dynamic batching for the classifier);
``vcf_pipeline`` is a Python-backend BLS model. The ONNX files are not copied into the
repository: each model loads its file from ``parameters.models_dir`` (empty: the
``VCF_MODELS__DIR`` variable of the server, else the ``engine/models`` folder of the vcfscreen
source on its PYTHONPATH) and refuses one whose SHA-256 differs from ``weights_sha256``.

``gpu``: ``vertebra_seg`` and ``vertebra_cls`` are ``tensorrt_plan`` models (FP16 plans built
by ``vcfscreen export --tensorrt`` with the optimisation profiles recorded in their
parameters; KIND_GPU instances; dynamic batching for the classifier); ``vcf_pipeline`` is the
same BLS model as on CPU.

Every ``model.py`` is a two-line shim importing its class from
:mod:`engine.serving.python_models`, so the served code is the tested code.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from engine.models.contract import CLS_MODEL, SEG_MODEL
from engine.serving.spec import (
    CLS_MAX_BATCH,
    CPU,
    GPU,
    PIPELINE_MODEL,
    PROFILES,
    CpuOptions,
    GpuOptions,
    ModelFacts,
    ModelSpec,
    ServedWeights,
    cls_trt_profile,
    config_dtype,
    seg_trt_profile,
    specs_from_facts,
)

GENERATOR = "vcfscreen triton-repo"
SHIM_CLASSES = {SEG_MODEL: "OnnxRuntimeModel", CLS_MODEL: "OnnxRuntimeModel", PIPELINE_MODEL: "PipelineModel"}
ROLE = {
    SEG_MODEL: "the vertebra segmentation 3D U-Net",
    CLS_MODEL: "the per-vertebra fracture / Genant grade classifier (3D ResNet)",
    PIPELINE_MODEL: "the model a client calls: segmentation, level labelling, crops and classification "
    "of one study in one request (BLS)",
}


def _tensors(target, specs) -> None:
    for spec in specs:
        tensor = target.add()
        tensor.name = spec.name
        tensor.data_type = mc.DataType.Value(config_dtype(spec.dtype))
        tensor.dims.extend(spec.dims)


def _base(spec: ModelSpec) -> mc.ModelConfig:
    config = mc.ModelConfig(name=spec.name, max_batch_size=spec.max_batch_size)
    _tensors(config.input, spec.inputs)
    _tensors(config.output, spec.outputs)
    return config


def _params(config: mc.ModelConfig, **values: object) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _weights_params(config: mc.ModelConfig, weights: ServedWeights) -> None:
    meta = weights.metadata
    _params(
        config,
        weights_version=meta.version,
        weights_sha256=weights.sha256,
        class_names=",".join(meta.class_names),
        input_spacing_mm=",".join(f"{v:g}" for v in meta.input_spacing_mm),
        hu_window=",".join(f"{v:g}" for v in meta.hu_window),
    )


def _instances(config: mc.ModelConfig, kind: str, count: int) -> None:
    config.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value(kind), count=count)


def model_configs(
    profile: str,
    facts: ModelFacts,
    cpu: CpuOptions | None = None,
    gpu: GpuOptions | None = None,
    models_dir: str = "",
) -> dict[str, mc.ModelConfig]:
    """The three model configs of ``profile``, by model name."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    cpu, gpu = cpu or CpuOptions(), gpu or GpuOptions()
    specs = specs_from_facts(facts)
    seg, cls, pipe = (_base(specs[name]) for name in (SEG_MODEL, CLS_MODEL, PIPELINE_MODEL))
    weights = {SEG_MODEL: facts.seg, CLS_MODEL: facts.cls}
    for config in (seg, cls):
        _weights_params(config, weights[config.name])
    _params(seg, grid_multiple=facts.seg.metadata.grid_multiple)
    _params(cls, crop_size=facts.cls.metadata.crop_size)
    if profile == CPU:
        for config, threads, count in ((seg, cpu.seg_threads, cpu.seg_instances), (cls, cpu.cls_threads, cpu.cls_instances)):
            config.backend = "python"
            _instances(config, "KIND_CPU", count)
            _params(config, onnx_file=weights[config.name].file_name, models_dir=models_dir, intra_op_threads=threads)
        queue_delay, pipe_instances = cpu.cls_queue_delay_us, cpu.pipeline_instances
        preferred = [CLS_MAX_BATCH]
    else:
        precision = "FP16" if gpu.fp16 else "FP32"
        profiles = {
            SEG_MODEL: seg_trt_profile(facts.seg.metadata.grid_multiple, gpu),
            CLS_MODEL: cls_trt_profile(facts.cls.metadata.crop_size, gpu),
        }
        for config, count in ((seg, gpu.seg_instances), (cls, gpu.cls_instances)):
            config.platform = "tensorrt_plan"
            config.default_model_filename = "model.plan"
            group = config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=count)
            group.profile.append("0")
            _params(
                config,
                source_onnx=weights[config.name].file_name,
                precision=precision,
                trt_profile_min_opt_max=profiles[config.name].render(),
            )
        queue_delay, pipe_instances = gpu.cls_queue_delay_us, gpu.pipeline_instances
        preferred = [gpu.cls_opt_batch, CLS_MAX_BATCH]
    cls.dynamic_batching.preferred_batch_size.extend(preferred)
    cls.dynamic_batching.max_queue_delay_microseconds = queue_delay
    pipe.backend = "python"
    # The pipeline's own work (labelling, cutting crops) is numpy/scipy: CPU instances in both
    # profiles; on GPU it asks the TensorRT models for CPU outputs (preferred_memory).
    _instances(pipe, "KIND_CPU", pipe_instances)
    _params(
        pipe,
        crop_size=facts.cls.metadata.crop_size,
        classifier_max_batch=CLS_MAX_BATCH,
        grid_multiple=facts.seg.metadata.grid_multiple,
        seg_classes=",".join(facts.seg.metadata.class_names),
        hu_window=",".join(f"{v:g}" for v in facts.seg.metadata.hu_window),
        models_dir=models_dir,  # where the labelling's top_levels.json is (empty: as for the ONNX files)
    )
    return {config.name: config for config in (seg, cls, pipe)}


_REPEATED = re.compile(r"^( *)(dims|preferred_batch_size|profile): (\S+)$")


def _compact(text: str) -> str:
    """``dims: 1`` / ``dims: -1`` on consecutive lines -> ``dims: [1, -1]`` (the same message)."""
    out: list[str] = []
    for line in text.splitlines():
        match = _REPEATED.match(line)
        if match is None:
            out.append(line)
            continue
        indent, key, value = match.groups()
        if out and out[-1].startswith(f"{indent}{key}: ["):
            out[-1] = f"{out[-1][:-1]}, {value}]"
        else:
            out.append(f"{indent}{key}: [{value}]")
    return "\n".join(out) + "\n"


def _header(profile: str, name: str, facts: ModelFacts) -> str:
    lines = [
        f"{name} ({profile.upper()} profile): {ROLE[name]}.",
        f"Generated by `{GENERATOR} --profile {profile}` from engine/serving/spec.py and the metadata of",
        f"{facts.seg.file_name} ({facts.seg.version}) and {facts.cls.file_name} ({facts.cls.version}).",
        "Do not edit: regenerate (tests/unit/engine/serving compares the checked-in repository with it).",
    ]
    if profile == CPU and name != PIPELINE_MODEL:
        lines += [
            "ONNX Runtime in the Python backend; the ONNX file is not copied here: model.py loads",
            "parameters.onnx_file from parameters.models_dir (empty: $VCF_MODELS__DIR, else the",
            "engine/models folder of the vcfscreen source on the server's PYTHONPATH) and refuses",
            "a file whose SHA-256 differs from parameters.weights_sha256.",
        ]
    if profile == GPU and name != PIPELINE_MODEL:
        lines += [
            "1/model.plan is built on the GPU it serves from by `vcfscreen export --tensorrt`, with",
            "the optimisation profile of parameters.trt_profile_min_opt_max (min;opt;max shapes).",
        ]
    return "".join(f"# {line}\n" for line in lines)


def render_config(profile: str, config: mc.ModelConfig, facts: ModelFacts) -> str:
    return _header(profile, config.name, facts) + _compact(text_format.MessageToString(config, as_utf8=True))


def shim(profile: str, name: str) -> str:
    cls = SHIM_CLASSES[name]
    return (
        f'"""Triton Python-backend model {name} ({profile} profile), generated by `{GENERATOR}`: do not edit.\n\n'
        f"The code is engine.serving.python_models.{cls}, imported from the vcfscreen source on the\n"
        'server\'s PYTHONPATH, so what Triton runs is what the unit tests cover.\n"""\n\n'
        "import os\nimport sys\n\n"
        "# The backend stub embeds Python with the environment ignored: honour PYTHONPATH here.\n"
        "for _entry in os.environ.get(\"PYTHONPATH\", \"\").split(os.pathsep):\n"
        "    if _entry and _entry not in sys.path:\n"
        "        sys.path.append(_entry)\n\n"
        f"from engine.serving.python_models import {cls} as TritonPythonModel  # noqa: E402\n\n"
        '__all__ = ["TritonPythonModel"]\n'
    )


def repository_files(
    profile: str,
    facts: ModelFacts,
    cpu: CpuOptions | None = None,
    gpu: GpuOptions | None = None,
    models_dir: str = "",
) -> dict[str, str]:
    """Relative path -> text of every generated file of ``profile``."""
    files: dict[str, str] = {}
    for name, config in model_configs(profile, facts, cpu, gpu, models_dir).items():
        files[f"{name}/config.pbtxt"] = render_config(profile, config, facts)
        if config.backend == "python":
            files[f"{name}/1/model.py"] = shim(profile, name)
    return files


def write_repository(
    profile: str,
    out: Path,
    facts: ModelFacts,
    cpu: CpuOptions | None = None,
    gpu: GpuOptions | None = None,
    models_dir: str = "",
) -> list[Path]:
    """Write (or overwrite) the generated files under ``out``; other files there are kept
    (the CPU repository also holds the stack's ``hu_window`` smoke model)."""
    written = []
    for relative, text in repository_files(profile, facts, cpu, gpu, models_dir).items():
        path = Path(out) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    if profile == GPU:
        for name in (SEG_MODEL, CLS_MODEL):
            (Path(out) / name / "1").mkdir(parents=True, exist_ok=True)
    return written
