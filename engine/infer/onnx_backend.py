"""The in-process backend: both models run by ONNX Runtime inside the screening process.

One ``InferenceSession`` per model is built at construction and reused for every study
(a session costs hundreds of milliseconds to build, a study's inference a few seconds).
Before the first study, each file is checked against what this code sends and reads:
tensor names, ranks, dtypes and fixed dimensions, and the ``vcf.*`` metadata written by
:mod:`engine.models.export` (role, classes, crop size, spacing, HU window). Any mismatch is a
:class:`~engine.errors.ConfigurationError` naming the file's value and the expected one, so
a wrong or stale model stops the process at start-up instead of mis-screening studies.

Sessions are safe to call from several threads (ONNX Runtime serialises nothing but its own
state); this class keeps no per-call state besides counters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.errors import ConfigurationError
from engine.infer.base import check_crops, check_volume, sigmoid, softmax
from engine.models.contract import (
    CLS_FRACTURE_OUTPUT,
    CLS_GRADE_OUTPUT,
    CLS_INPUT,
    CLS_MODEL,
    GRADE_CLASSES,
    SEG_INPUT,
    SEG_MODEL,
    SEG_OUTPUT,
    ModelMetadata,
    file_sha256,
)
from engine.settings import ModelSettings, PreprocessSettings

log = logging.getLogger(__name__)

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_FLOAT = "tensor(float)"


@dataclass(frozen=True)
class _TensorSpec:
    """What the code expects of one model input or output."""

    name: str
    rank: int
    fixed: dict[int, int]
    """Axis -> required extent, for axes that must not vary."""


@dataclass(frozen=True)
class LoadedModel:
    """One checked model: its session, metadata and file identity."""

    path: Path
    session: ort.InferenceSession
    metadata: ModelMetadata
    sha256: str

    @property
    def version(self) -> str:
        return f"{self.metadata.version}+{self.sha256[:12]}"


def execution_providers(prefer_gpu: bool, available: Sequence[str] | None = None) -> list[str]:
    """TensorRT, then CUDA, when offered and wanted; the CPU provider always last."""
    offered = list(ort.get_available_providers() if available is None else available)
    chosen = [p for p in _GPU_PROVIDERS if prefer_gpu and p in offered]
    return chosen + ["CPUExecutionProvider"]


def session_options(settings: ModelSettings) -> ort.SessionOptions:
    """Explicit threads, full graph optimisation, the arena as configured; operators in sequence."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Study extents vary, and an arena keeps the largest peak ever seen for the process'
    # life; without it, memory returns to the allocator after each study.
    options.enable_cpu_mem_arena = settings.cpu_memory_arena
    options.log_severity_level = 3  # errors only: ORT's warnings are not actionable for users
    # Idle intra-op threads sleep instead of spinning: the worker overlaps loading, DALI and
    # inference on few cores, and spinning threads would take the cores the other stages need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxBackend:
    """Segmentation and classification with ONNX Runtime (see :class:`InferenceBackend`).

    ``preprocess``, when given, is checked against the spacing, HU window and grid the models
    were trained on; the screening core passes it, tests may not.
    """

    def __init__(self, settings: ModelSettings, preprocess: PreprocessSettings | None = None):
        self.settings = settings
        self.providers = execution_providers(settings.prefer_gpu)
        options = session_options(settings)
        self._seg = _load(settings, "segmentation_file", SEG_MODEL, options, self.providers)
        self._cls = _load(settings, "classifier_file", CLS_MODEL, options, self.providers)
        _check_segmenter(self._seg)
        _check_classifier(self._cls, settings)
        _check_agreement(self._seg, self._cls, preprocess)
        self.runs = {SEG_MODEL: 0, CLS_MODEL: 0}
        log.info(
            "ONNX Runtime models loaded: %s on %s",
            ", ".join(f"{name} {version}" for name, version in self.versions.items()),
            self._seg.session.get_providers()[0],
        )

    @property
    def versions(self) -> dict[str, str]:
        return {SEG_MODEL: self._seg.version, CLS_MODEL: self._cls.version}

    @property
    def seg_classes(self) -> tuple[str, ...]:
        return self._seg.metadata.class_names

    @property
    def crop_size(self) -> int:
        return self._cls.metadata.crop_size

    @property
    def grid_multiple(self) -> int:
        return self._seg.metadata.grid_multiple

    @property
    def models(self) -> dict[str, LoadedModel]:
        return {SEG_MODEL: self._seg, CLS_MODEL: self._cls}

    def segment(self, volume: np.ndarray) -> np.ndarray:
        """Logits (C, D, H, W) float32 over :attr:`seg_classes`; D, H, W must be grid multiples."""
        check_volume(volume, self.grid_multiple)
        x = np.ascontiguousarray(volume)[None, None]
        (logits,) = self._seg.session.run([SEG_OUTPUT], {SEG_INPUT: x})
        self.runs[SEG_MODEL] += 1
        return logits[0]

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fracture probability (N,) and grade probabilities (N, 4), in runs of ``crop_batch_size``."""
        check_crops(crops, self.crop_size)
        n = crops.shape[0]
        fracture = np.empty((n,), dtype=np.float32)
        grades = np.empty((n, len(GRADE_CLASSES)), dtype=np.float32)
        step = self.settings.crop_batch_size
        for start in range(0, n, step):
            chunk = np.ascontiguousarray(crops[start : start + step])
            fracture_logit, grade_logits = self._cls.session.run(
                [CLS_FRACTURE_OUTPUT, CLS_GRADE_OUTPUT], {CLS_INPUT: chunk}
            )
            self.runs[CLS_MODEL] += 1
            fracture[start : start + len(chunk)] = sigmoid(fracture_logit[:, 0])
            grades[start : start + len(chunk)] = softmax(grade_logits, axis=1)
        return fracture, grades


def _load(
    settings: ModelSettings, file_field: str, role: str, options: ort.SessionOptions, providers: list[str]
) -> LoadedModel:
    file_name = getattr(settings, file_field)
    path = Path(settings.dir) / file_name
    if not path.is_file():
        raise ConfigurationError(
            f"the {role} model {path} does not exist (models.dir={settings.dir}, "
            f"models.{file_field}={file_name}). Train the bundled models with `vcfscreen train`, "
            f"or set VCF_MODELS__DIR to a folder that holds {file_name}"
        )
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT's load errors (InvalidProtobuf, Fail...) derive from Exception only
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"ONNX Runtime cannot load the {role} model {path}: {first_line}") from None
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
    if metadata.model != role:
        raise ConfigurationError(
            f"{path} holds the model {metadata.model!r} but models.{file_field} must name the {role!r} model"
        )
    return LoadedModel(path=path, session=session, metadata=metadata, sha256=file_sha256(path))


def _check_tensors(
    path: Path, kind: str, actual: Sequence[ort.NodeArg], expected: Sequence[_TensorSpec]
) -> None:
    """Names, then dtype, rank and fixed extents of every input or output."""
    names = [arg.name for arg in actual]
    wanted = [spec.name for spec in expected]
    if sorted(names) != sorted(wanted):
        raise ConfigurationError(f"{path}: the model's {kind} are {names} but vcfscreen expects {wanted}")
    by_name = {arg.name: arg for arg in actual}
    for spec in expected:
        arg = by_name[spec.name]
        if arg.type != _FLOAT:
            raise ConfigurationError(f"{path}: {kind[:-1]} {spec.name!r} is {arg.type}, vcfscreen expects {_FLOAT}")
        if len(arg.shape) != spec.rank:
            raise ConfigurationError(
                f"{path}: {kind[:-1]} {spec.name!r} has rank {len(arg.shape)} (shape {arg.shape}), "
                f"vcfscreen expects rank {spec.rank}"
            )
        for axis, extent in spec.fixed.items():
            if isinstance(arg.shape[axis], int) and arg.shape[axis] != extent:
                raise ConfigurationError(
                    f"{path}: axis {axis} of {kind[:-1]} {spec.name!r} is {arg.shape[axis]}, vcfscreen expects {extent}"
                )


def _check_segmenter(model: LoadedModel) -> None:
    meta, path = model.metadata, model.path
    classes = meta.class_names
    if classes[0] != "background" or "vertebral_body" not in classes:
        raise ConfigurationError(
            f"{path}: segmentation classes {list(classes)} must start with 'background' and include 'vertebral_body'"
        )
    if meta.grid_multiple < 1:
        raise ConfigurationError(f"{path}: metadata grid_multiple={meta.grid_multiple}, expected a positive integer")
    _check_tensors(path, "inputs", model.session.get_inputs(), [_TensorSpec(SEG_INPUT, 5, {1: 1})])
    _check_tensors(
        path, "outputs", model.session.get_outputs(), [_TensorSpec(SEG_OUTPUT, 5, {1: len(classes)})]
    )


def _check_classifier(model: LoadedModel, settings: ModelSettings) -> None:
    meta, path = model.metadata, model.path
    if meta.crop_size != settings.crop_size:
        raise ConfigurationError(
            f"{path} takes crops of {meta.crop_size} voxels but models.crop_size is {settings.crop_size}"
        )
    if len(meta.class_names) != len(GRADE_CLASSES):
        raise ConfigurationError(
            f"{path}: grade classes {list(meta.class_names)}, vcfscreen expects {len(GRADE_CLASSES)} Genant grades"
        )
    c = meta.crop_size
    _check_tensors(path, "inputs", model.session.get_inputs(), [_TensorSpec(CLS_INPUT, 5, {1: 1, 2: c, 3: c, 4: c})])
    _check_tensors(
        path,
        "outputs",
        model.session.get_outputs(),
        [_TensorSpec(CLS_FRACTURE_OUTPUT, 2, {1: 1}), _TensorSpec(CLS_GRADE_OUTPUT, 2, {1: len(GRADE_CLASSES)})],
    )


def _check_agreement(seg: LoadedModel, cls: LoadedModel, preprocess: PreprocessSettings | None) -> None:
    """Crops are cut from the segmentation grid, so both models must share spacing and window."""
    for field in ("input_spacing_mm", "hu_window"):
        a, b = getattr(seg.metadata, field), getattr(cls.metadata, field)
        if not np.allclose(a, b):
            raise ConfigurationError(f"{field} differs between {seg.path} ({a}) and {cls.path} ({b})")
    if preprocess is None:
        return
    meta = seg.metadata
    if not np.allclose(preprocess.spacing_mm, meta.input_spacing_mm):
        raise ConfigurationError(
            f"preprocess.spacing_mm is {preprocess.spacing_mm} but {seg.path} was trained at {meta.input_spacing_mm}"
        )
    if not np.allclose(preprocess.hu_window, meta.hu_window):
        raise ConfigurationError(
            f"preprocess.hu_window is {preprocess.hu_window} but {seg.path} was trained on {meta.hu_window}"
        )
    if preprocess.grid_multiple % meta.grid_multiple:
        raise ConfigurationError(
            f"preprocess.grid_multiple {preprocess.grid_multiple} is not a multiple of the grid "
            f"{meta.grid_multiple} of {seg.path}"
        )
