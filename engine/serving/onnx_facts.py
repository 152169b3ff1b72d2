"""Read the ONNX files a repository serves, and check them against what Triton is told.

What can be verified without a GPU is verified here: the files pass ``onnx.checker``,
carry vcfscreen metadata of the right role, and their graph inputs and outputs have the
names, element types and extents that a generated Triton config declares (for the CPU and
the GPU profile alike). A TensorRT plan built from a file that passes is then fed exactly
the shapes its optimisation profile was built for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from engine.errors import ConfigurationError
from engine.models.contract import CLS_MODEL, SEG_MODEL, ModelMetadata, file_sha256
from engine.serving.spec import ModelFacts, ServedWeights

DEFAULT_FILES = {SEG_MODEL: "vertebra_seg.onnx", CLS_MODEL: "vertebra_cls.onnx"}

_ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.BOOL: "BOOL",
}


@dataclass(frozen=True)
class GraphTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    """Extents; -1 where the graph has a symbolic (dynamic) dimension."""


def _missing(path: Path, role: str) -> ConfigurationError:
    return ConfigurationError(
        f"the {role} model {path} does not exist: train the bundled models with `vcfscreen train`, "
        f"or pass --models-dir / set VCF_MODELS__DIR to a folder that holds {path.name}"
    )


def load_model(path: Path, role: str) -> onnx.ModelProto:
    if not path.is_file():
        raise _missing(path, role)
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have no common base
        raise ConfigurationError(f"{path} is not a readable ONNX file: {exc}") from None


def read_weights(path: Path, role: str) -> ServedWeights:
    """Metadata and SHA-256 of one exported model; refuses a file of another role."""
    if not path.is_file():
        raise _missing(path, role)
    model = onnx.load(str(path), load_external_data=False)
    metadata = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))
    if metadata.model != role:
        raise ConfigurationError(f"{path} holds the model {metadata.model!r}, expected the {role!r} model")
    return ServedWeights(file_name=path.name, metadata=metadata, sha256=file_sha256(path))


def read_facts(models_dir: Path, seg_file: str = DEFAULT_FILES[SEG_MODEL], cls_file: str = DEFAULT_FILES[CLS_MODEL]) -> ModelFacts:
    """Both models' metadata and identity, from ``models_dir``."""
    facts = ModelFacts(
        seg=read_weights(Path(models_dir) / seg_file, SEG_MODEL),
        cls=read_weights(Path(models_dir) / cls_file, CLS_MODEL),
    )
    for name in ("input_spacing_mm", "hu_window"):
        a, b = getattr(facts.seg.metadata, name), getattr(facts.cls.metadata, name)
        if tuple(a) != tuple(b):
            raise ConfigurationError(f"{name} differs between {seg_file} ({a}) and {cls_file} ({b}) in {models_dir}")
    return facts


def graph_tensors(model: onnx.ModelProto) -> tuple[list[GraphTensor], list[GraphTensor]]:
    """The graph's real inputs (initialisers excluded) and outputs."""
    initialisers = {init.name for init in model.graph.initializer}

    def convert(value: onnx.ValueInfoProto) -> GraphTensor:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        dtype = _ONNX_TO_TRITON.get(tensor_type.elem_type, onnx.TensorProto.DataType.Name(tensor_type.elem_type))
        return GraphTensor(value.name, dtype, dims)

    inputs = [convert(v) for v in model.graph.input if v.name not in initialisers]
    return inputs, [convert(v) for v in model.graph.output]


def config_mismatches(
    model_name: str, max_batch_size: int, declared: dict[str, tuple[str, tuple[int, ...]]], kind: str, graph: list[GraphTensor]
) -> list[str]:
    """Differences between a config's declared tensors (name -> (dtype, dims)) and the graph's.

    A dynamic config extent needs a dynamic graph axis (Triton would pass any extent); a
    fixed config extent accepts a fixed graph axis of the same size or a dynamic one.
    """
    problems = []
    by_name = {t.name: t for t in graph}
    if sorted(declared) != sorted(by_name):
        return [f"{model_name}: the config declares {kind} {sorted(declared)} but the ONNX graph has {sorted(by_name)}"]
    for name, (dtype, dims) in declared.items():
        tensor = by_name[name]
        shape = ((-1,) if max_batch_size > 0 else ()) + tuple(dims)
        if dtype != tensor.dtype:
            problems.append(f"{model_name}: {kind[:-1]} {name!r} is {dtype} in the config, {tensor.dtype} in the ONNX graph")
            continue
        if len(shape) != len(tensor.shape):
            problems.append(
                f"{model_name}: {kind[:-1]} {name!r} has shape {list(shape)} in the config "
                f"(max_batch_size {max_batch_size}), {list(tensor.shape)} in the ONNX graph"
            )
            continue
        for axis, (want, have) in enumerate(zip(shape, tensor.shape)):
            if axis == 0 and max_batch_size > 0:
                ok = have == -1 or (have >= max_batch_size)
            elif want == -1:
                ok = have == -1
            else:
                ok = have in (-1, want)
            if not ok:
                problems.append(
                    f"{model_name}: axis {axis} of {kind[:-1]} {name!r} is {want} in the config "
                    f"(shape {list(shape)}) but {have} in the ONNX graph (shape {list(tensor.shape)})"
                )
    return problems


def check_model(model: onnx.ModelProto, source: str) -> None:
    """``onnx.checker`` with shape inference; a failure names the file."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
        raise ConfigurationError(f"{source} fails onnx.checker: {first}") from None
