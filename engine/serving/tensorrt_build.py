"""Build the GPU profile's TensorRT plans from the exported ONNX files.

A plan is specific to the GPU model, driver and TensorRT version it was built with, so it is
built where it is served (an init container, or ``vcfscreen export --tensorrt`` on the GPU
node), never shipped. Each plan gets one optimisation profile covering the dynamic axes the
config declares (:func:`engine.serving.spec.seg_trt_profile`: min/opt/max D, H, W of the
U-Net; :func:`~engine.serving.spec.cls_trt_profile`: the classifier's batch) and, by default,
FP16 kernels. After building, the plan is deserialised and its I/O tensors compared with the
spec, so a plan that does not fit its config is never left in the repository.

``tensorrt`` is the optional ``gpu`` extra; :func:`gpu_problem` says what is missing where
it or a GPU is absent, and nothing here is imported at module load.
"""

from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from engine.errors import ConfigurationError
from engine.serving.spec import ModelSpec, TrtProfile

NEEDS = "an NVIDIA GPU with its driver, and TensorRT 10 (`pip install vcfscreen[gpu]`)"


class GpuUnavailableError(ConfigurationError):
    """This machine cannot build TensorRT plans; the message says what it lacks."""

    code = "gpu_unavailable"


@dataclass(frozen=True)
class PlanReport:
    path: Path
    size_bytes: int
    tensorrt_version: str
    precision: str
    profile: TrtProfile


def _nvidia_gpu_present() -> bool:
    if Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*")):
        return True
    return shutil.which("nvidia-smi") is not None and Path("/proc/driver/nvidia/gpus").is_dir()


def gpu_problem() -> str | None:
    """Why plans cannot be built here (None when they can)."""
    if not _nvidia_gpu_present():
        return f"no NVIDIA GPU or driver found (no /dev/nvidiactl, no /proc/driver/nvidia); building plans needs {NEEDS}"
    try:
        importlib.import_module("tensorrt")
    except ImportError as exc:
        return f"the TensorRT Python package is not importable ({exc}); building plans needs {NEEDS}"
    return None


def require_tensorrt() -> ModuleType:
    problem = gpu_problem()
    if problem:
        raise GpuUnavailableError(f"TensorRT plans not built: {problem}")
    return importlib.import_module("tensorrt")


def build_plan(
    onnx_path: Path, plan_path: Path, spec: ModelSpec, profile: TrtProfile, *, fp16: bool = True, workspace_mib: int = 4096
) -> PlanReport:
    """Parse ``onnx_path``, build a plan with ``profile`` on its input, check it against ``spec``."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigurationError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    optimisation = builder.create_optimization_profile()
    (input_spec,) = spec.inputs
    optimisation.set_shape(input_spec.name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigurationError(f"TensorRT failed to build a plan from {onnx_path} (see its log above)")
    _check_engine(trt, logger, bytes(serialized), spec, onnx_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    staging = plan_path.with_name(f".{plan_path.name}.partial")
    staging.write_bytes(bytes(serialized))
    os.replace(staging, plan_path)
    precision = "FP16" if fp16 and builder.platform_has_fast_fp16 else "FP32"
    return PlanReport(plan_path, plan_path.stat().st_size, trt.__version__, precision, profile)


def _check_engine(trt: ModuleType, logger: object, plan: bytes, spec: ModelSpec, source: Path) -> None:
    """The engine's I/O tensors: the spec's names, FP32, and fixed extents equal to the spec's."""
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise ConfigurationError(f"the plan built from {source} cannot be deserialised")
    tensors = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        tensors[name] = (tuple(engine.get_tensor_shape(name)), engine.get_tensor_dtype(name))
    expected = {t.name: spec.full_shape(t) for t in spec.inputs + spec.outputs}
    if sorted(tensors) != sorted(expected):
        raise ConfigurationError(f"the plan from {source} has tensors {sorted(tensors)}, the config {sorted(expected)}")
    for name, want in expected.items():
        shape, dtype = tensors[name]
        if dtype != trt.DataType.FLOAT:
            raise ConfigurationError(f"plan tensor {name!r} from {source} is {dtype}, the config declares FP32")
        for axis, (w, h) in enumerate(zip(want, shape)):
            if w != -1 and h not in (-1, w):
                raise ConfigurationError(
                    f"axis {axis} of plan tensor {name!r} from {source} is {h}, the config declares {w} ({list(want)})"
                )
