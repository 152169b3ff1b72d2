"""The Triton Python-backend models: ONNX Runtime models (CPU profile) and the BLS pipeline.

Loaded by the two-line ``model.py`` shims that :mod:`engine.serving.repository` writes, inside
Triton's Python backend stub (its own environment: numpy<2, onnxruntime, scipy). Failure
policy, as the python_backend examples do it: a model that cannot work (ONNX file missing,
SHA-256 not the one the repository was generated for) raises in ``initialize`` so Triton
reports it unavailable with the reason; one bad request (non-finite values, a shape off the
model grid, a failing sub-model) gets an error response and the model stays up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from engine.models.contract import (
    CLS_FRACTURE_OUTPUT,
    CLS_GRADE_OUTPUT,
    CLS_INPUT,
    CLS_MODEL,
    SEG_INPUT,
    SEG_MODEL,
    SEG_OUTPUT,
    ModelMetadata,
    file_sha256,
)
from engine.postprocess.top_levels import TOP_LEVELS_FILE, cached_model
from engine.serving import spec as s
from engine.serving.pipeline_core import batched_probabilities, encode, read_spine


def _pb():
    """The backend's utilities: importable only inside the Python backend stub."""
    import triton_python_backend_utils as pb_utils

    return pb_utils


def error_response(message: str, invalid_input: bool = False):
    """A per-request error; INVALID_ARG (gRPC INVALID_ARGUMENT) for a bad input where the
    backend knows error codes, so clients can tell a bad study from a failing model."""
    pb = _pb()
    code = getattr(pb.TritonError, "INVALID_ARG", None) if invalid_input else None
    error = pb.TritonError(message, code) if code is not None else pb.TritonError(message)
    return pb.InferenceResponse(error=error)


class RequestFailed(Exception):
    """One request cannot be served; its message goes back to the client, the model stays up."""

    def __init__(self, message: str, invalid_input: bool = False):
        super().__init__(message)
        self.invalid_input = invalid_input


def parameters(config: dict) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


def resolve_models_dir(param: str, model_dir: str) -> Path:
    """Where the ONNX files are: the config parameter (relative to the model's folder), else the
    server's ``VCF_MODELS__DIR``, else ``engine/models`` of the vcfscreen source being imported."""
    if param:
        path = Path(param)
        return path if path.is_absolute() else (Path(model_dir) / path).resolve()
    env = os.environ.get("VCF_MODELS__DIR")
    if env:
        return Path(env)
    import engine.models

    return Path(engine.models.__file__).resolve().parent


def input_problem(name: str, array: np.ndarray) -> str | None:
    """Why one input cannot be run, or None."""
    if array.size == 0:
        return f"input {name!r} is empty (shape {list(array.shape)})"
    if not np.all(np.isfinite(array)):
        return f"input {name!r} (shape {list(array.shape)}) contains NaN or infinite values"
    return None


class OnnxRuntimeModel:
    """``vertebra_seg`` / ``vertebra_cls`` on CPU: one ONNX Runtime session per instance.

    Requests the dynamic batcher hands over together are concatenated along the batch axis
    and run as one batch (the Python backend does not merge them itself)."""

    def initialize(self, args: dict) -> None:
        pb = _pb()
        config = json.loads(args["model_config"])
        self.name = config["name"]
        params = parameters(config)
        models_dir = resolve_models_dir(params.get("models_dir", ""), args["model_repository"])
        path = models_dir / params["onnx_file"]
        if not path.is_file():
            raise pb.TritonModelException(
                f"{self.name}: the ONNX file {path} does not exist. Train the bundled models "
                "(`vcfscreen train`), or start Triton with VCF_MODELS__DIR pointing at a folder that "
                f"holds {params['onnx_file']}, or set parameters.models_dir (`vcfscreen triton-repo --models-dir`)"
            )
        sha = file_sha256(path)
        if sha != params["weights_sha256"]:
            raise pb.TritonModelException(
                f"{self.name}: {path} has SHA-256 {sha[:12]}... but this repository was generated for "
                f"{params['weights_sha256'][:12]}... (weights {params.get('weights_version')}): regenerate it with "
                "`vcfscreen triton-repo --profile cpu <repository>` so config and weights agree"
            )
        import onnxruntime as ort

        from engine.infer.onnx_backend import session_options
        from engine.settings import ModelSettings

        # The same session options as the in-process backend: same graph, same numbers.
        options = session_options(ModelSettings(intra_op_threads=int(params.get("intra_op_threads", "1"))))
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map, str(path))
        if metadata.model != self.name:
            raise pb.TritonModelException(f"{self.name}: {path} holds the model {metadata.model!r}")
        self.input_name = config["input"][0]["name"]
        self.output_names = [output["name"] for output in config["output"]]

    def execute(self, requests: list) -> list:
        pb = _pb()
        responses: list = [None] * len(requests)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for index, request in enumerate(requests):
            array = pb.get_input_tensor_by_name(request, self.input_name).as_numpy()
            problem = input_problem(self.input_name, array)
            if problem:
                responses[index] = error_response(f"{self.name}: {problem}", invalid_input=True)
                continue
            groups.setdefault(array.shape[1:], []).append((index, array))
        for members in groups.values():
            batch = np.concatenate([array for _, array in members]) if len(members) > 1 else members[0][1]
            try:
                results = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch)})
            except Exception as exc:  # noqa: BLE001 - ORT raises plain RuntimeError subclasses
                for index, _ in members:
                    responses[index] = error_response(f"{self.name}: ONNX Runtime failed: {str(exc).splitlines()[0]}")
                continue
            start = 0
            for index, array in members:
                stop = start + array.shape[0]
                tensors = [pb.Tensor(name, np.ascontiguousarray(out[start:stop])) for name, out in zip(self.output_names, results)]
                responses[index] = pb.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses


class PipelineModel:
    """``vcf_pipeline``: one study per request; the sub-models are called with BLS."""

    def initialize(self, args: dict) -> None:
        params = parameters(json.loads(args["model_config"]))
        self.crop_size = int(params["crop_size"])
        self.max_batch = int(params["classifier_max_batch"])
        self.grid = int(params["grid_multiple"])
        self.num_classes = len(params["seg_classes"].split(","))
        if "hu_window" not in params:  # a repository written before the labeller read the image
            raise _pb().TritonModelException("vcf_pipeline's config has no hu_window parameter: regenerate "
                                             "the model repository with `vcfscreen triton-repo`")
        low, high = (float(v) for v in params["hu_window"].split(","))
        self.hu_window = (low, high)
        # The labelling's top-vertebrae cue, from the same models folder as the ONNX models.
        models_dir = resolve_models_dir(params.get("models_dir", ""), args["model_repository"])
        self.top_model = cached_model(models_dir / TOP_LEVELS_FILE)

    def _exec(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        pb = _pb()
        extra = {}
        if hasattr(pb, "PreferredMemory"):  # GPU profile: ask TensorRT models for host outputs
            extra["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        request = pb.InferenceRequest(
            model_name=model,
            inputs=[pb.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
            requested_output_names=outputs,
            **extra,
        )
        response = request.exec()
        if response.has_error():
            raise RequestFailed(f"{model} failed: {response.error().message()}")
        arrays = []
        for name in outputs:
            tensor = pb.get_output_tensor_by_name(response, name)
            if tensor is None or not tensor.is_cpu():
                raise RequestFailed(f"{model} returned no host-memory output {name!r}")
            arrays.append(tensor.as_numpy())
        return arrays

    def _segment(self, volume: np.ndarray) -> np.ndarray:
        (logits,) = self._exec(SEG_MODEL, {SEG_INPUT: volume[None, None]}, [SEG_OUTPUT])
        if logits.ndim != 5 or logits.shape[1] != self.num_classes or logits.shape[2:] != volume.shape:
            raise RequestFailed(
                f"{SEG_MODEL} returned logits of shape {list(logits.shape)} for a volume of {list(volume.shape)} "
                f"({self.num_classes} classes expected)"
            )
        return logits[0]

    def _classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fracture, grades = self._exec(CLS_MODEL, {CLS_INPUT: crops}, [CLS_FRACTURE_OUTPUT, CLS_GRADE_OUTPUT])
        return fracture, grades

    def _check(self, volume: np.ndarray, spacing: np.ndarray) -> None:
        problem = input_problem(s.PIPE_VOLUME, volume)
        if problem:
            raise RequestFailed(problem, invalid_input=True)
        if any(extent % self.grid for extent in volume.shape):
            raise RequestFailed(
                f"volume shape {list(volume.shape)} is not a multiple of the segmentation grid {self.grid} "
                "(preprocess.grid_multiple must be a multiple of it)",
                invalid_input=True,
            )
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise RequestFailed(f"spacing_mm must be 3 positive millimetre values, got {spacing.tolist()}", invalid_input=True)

    def execute(self, requests: list) -> list:
        pb = _pb()
        responses = []
        for request in requests:
            try:
                volume = pb.get_input_tensor_by_name(request, s.PIPE_VOLUME).as_numpy()
                spacing = pb.get_input_tensor_by_name(request, s.PIPE_SPACING).as_numpy().astype(float).ravel()
                self._check(volume, spacing)
                reading = read_spine(
                    volume, spacing, self._segment,
                    lambda crops: batched_probabilities(self._classify, crops, self.max_batch), self.crop_size,
                    self.hu_window, top_model=self.top_model,
                )
                tensors = [pb.Tensor(name, value) for name, value in encode(reading).items()]
                responses.append(pb.InferenceResponse(output_tensors=tensors))
            except RequestFailed as exc:
                responses.append(error_response(f"{s.PIPELINE_MODEL}: {exc}", invalid_input=exc.invalid_input))
            except Exception as exc:  # noqa: BLE001 - a bug on one study must not take the model down
                message = f"{s.PIPELINE_MODEL}: {type(exc).__name__}: {exc}"
                responses.append(error_response(message))
        return responses
