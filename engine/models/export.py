"""Export the networks to ONNX, stamp their metadata, and prove ONNX Runtime agrees with torch.

Every exported file is: opset 17; named tensors (``volume`` -> ``seg_logits``;
``crops`` -> ``fracture_logit``, ``grade_logits``); a dynamic batch axis, plus dynamic
depth/height/width for the U-Net (a study's extent varies, the classifier's crop does not);
:class:`~engine.models.contract.ModelMetadata` in ``metadata_props``; ``onnx.checker``-clean.
It is then run with ONNX Runtime on two inputs whose shapes differ from each other and from
the traced example, and compared with torch: a shape baked in by tracing, or an operator
that ORT computes differently, fails the export instead of a study.

Outputs stay logits: softmax and sigmoid are not folded into the graph. The label map is an
argmax, which logits give as well as probabilities; the classifier's activations are two
cheap numpy calls in the runtime (:mod:`engine.infer.base`); and training, the ONNX file
and a TensorRT plan all share one output definition.

The file is written next to its destination and moved into place only after it passed, so a
failed export never leaves a half-checked model where the runtime would load it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from engine.errors import VcfScreenError
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
from engine.models.networks import ClassifierConfig, SegmenterConfig, count_parameters

OPSET = 17
DEFAULT_SPACING_MM = (2.0, 2.0, 2.0)
DEFAULT_HU_WINDOW = (-200.0, 1200.0)


class ExportError(VcfScreenError):
    """An exported model is invalid or disagrees with the torch network it came from."""

    code = "export"


@dataclass(frozen=True)
class ExportReport:
    """What was written and how well ONNX Runtime matched torch."""

    path: Path
    size_bytes: int
    sha256: str
    parameters: int
    max_abs_diff: float
    checked_shapes: tuple[tuple[int, ...], ...]
    metadata: ModelMetadata


def segmenter_metadata(
    config: SegmenterConfig,
    *,
    version: str,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
) -> ModelMetadata:
    return ModelMetadata(
        model=SEG_MODEL,
        architecture="monai.UNet",
        depth=len(config.channels),
        widths=tuple(config.channels),
        version=version,
        input_spacing_mm=tuple(float(s) for s in spacing_mm),  # type: ignore[arg-type]
        hu_window=tuple(float(h) for h in hu_window),  # type: ignore[arg-type]
        class_names=tuple(config.class_names),
        grid_multiple=config.grid_multiple,
    )


def classifier_metadata(
    config: ClassifierConfig,
    *,
    version: str,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
) -> ModelMetadata:
    return ModelMetadata(
        model=CLS_MODEL,
        architecture=f"monai.ResNet-{config.block}",
        depth=config.depth,
        widths=tuple(config.widths),
        version=version,
        input_spacing_mm=tuple(float(s) for s in spacing_mm),  # type: ignore[arg-type]
        hu_window=tuple(float(h) for h in hu_window),  # type: ignore[arg-type]
        class_names=GRADE_CLASSES[: config.num_grades],
        crop_size=config.crop_size,
    )


def export_segmenter(
    net: nn.Module,
    config: SegmenterConfig,
    path: Path,
    *,
    version: str,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
    check_shapes: Sequence[tuple[int, int, int, int, int]] = ((1, 1, 48, 32, 64), (2, 1, 32, 64, 48)),
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export the U-Net to ``path`` and verify it on ``check_shapes`` (B, 1, D, H, W)."""
    g = config.grid_multiple
    for shape in check_shapes:
        if len(shape) != 5 or shape[1] != 1 or any(extent % g for extent in shape[2:]):
            raise ValueError(f"check shape {shape} must be (B, 1, D, H, W) with D, H, W multiples of {g}")
    spatial = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    return _export(
        net,
        example=torch.rand(1, 1, 2 * g, 2 * g, 2 * g),
        path=Path(path),
        input_name=SEG_INPUT,
        output_names=(SEG_OUTPUT,),
        dynamic_axes={SEG_INPUT: spatial, SEG_OUTPUT: spatial},
        metadata=segmenter_metadata(config, version=version, spacing_mm=spacing_mm, hu_window=hu_window),
        check_shapes=check_shapes,
        tolerance=tolerance,
    )


def export_classifier(
    net: nn.Module,
    config: ClassifierConfig,
    path: Path,
    *,
    version: str,
    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
    hu_window: Sequence[float] = DEFAULT_HU_WINDOW,
    check_batches: Sequence[int] = (1, 3),
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export the classifier to ``path`` and verify it on batches of ``check_batches`` crops."""
    c = config.crop_size
    batch = {0: "batch"}
    return _export(
        net,
        example=torch.rand(2, 1, c, c, c),
        path=Path(path),
        input_name=CLS_INPUT,
        output_names=(CLS_FRACTURE_OUTPUT, CLS_GRADE_OUTPUT),
        dynamic_axes={CLS_INPUT: batch, CLS_FRACTURE_OUTPUT: batch, CLS_GRADE_OUTPUT: batch},
        metadata=classifier_metadata(config, version=version, spacing_mm=spacing_mm, hu_window=hu_window),
        check_shapes=[(n, 1, c, c, c) for n in check_batches],
        tolerance=tolerance,
    )


def read_metadata(path: Path) -> ModelMetadata:
    """The :class:`ModelMetadata` stored in an ONNX file."""
    model = onnx.load(str(path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))


def _export(
    net: nn.Module,
    *,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_names: tuple[str, ...],
    dynamic_axes: dict[str, dict[int, str]],
    metadata: ModelMetadata,
    check_shapes: Sequence[tuple[int, ...]],
    tolerance: float,
) -> ExportReport:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns about its own deprecation, about traced Python
            # control flow, and that instance norm uses the input's statistics in eval mode
            # (true of instance norm without running stats, and what we want); the ORT
            # comparison below is the check that counts.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True", category=UserWarning)
            torch.onnx.export(
                net,
                (example,),
                str(staging),
                dynamo=False,
                opset_version=OPSET,
                input_names=[input_name],
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        model = onnx.load(str(staging))
        onnx.helper.set_model_props(model, metadata.to_props())
        model.producer_name = "vcfscreen"
        model.doc_string = f"vcfscreen {metadata.model} {metadata.architecture} version {metadata.version}"
        onnx.checker.check_model(model, full_check=True)
        _check_dynamic_axes(model, dynamic_axes, path)
        onnx.save(model, str(staging))
        max_diff = _compare_with_torch(net, staging, input_name, output_names, check_shapes, tolerance)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
        net.train(was_training)
    return ExportReport(
        path=path,
        size_bytes=path.stat().st_size,
        sha256=file_sha256(path),
        parameters=count_parameters(net),
        max_abs_diff=max_diff,
        checked_shapes=tuple(tuple(s) for s in check_shapes),
        metadata=metadata,
    )


def _check_dynamic_axes(model: onnx.ModelProto, dynamic_axes: dict[str, dict[int, str]], path: Path) -> None:
    """Every axis declared dynamic must be symbolic in the graph, not a traced number."""
    values = {v.name: v for v in list(model.graph.input) + list(model.graph.output)}
    for name, axes in dynamic_axes.items():
        dims = values[name].type.tensor_type.shape.dim
        for axis in axes:
            if not dims[axis].dim_param:
                raise ExportError(
                    f"{path.name}: axis {axis} of {name!r} should be dynamic but is fixed at {dims[axis].dim_value}"
                )


def _compare_with_torch(
    net: nn.Module,
    onnx_path: Path,
    input_name: str,
    output_names: tuple[str, ...],
    check_shapes: Sequence[tuple[int, ...]],
    tolerance: float,
) -> float:
    """Largest |ORT - torch| over all outputs and shapes; raises above ``tolerance``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in check_shapes:
        x = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            expected = net(x)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        got = session.run(list(output_names), {input_name: x.numpy()})
        for name, want, have in zip(output_names, expected, got):
            want_np = want.numpy()
            if want_np.shape != have.shape:
                raise ExportError(
                    f"{onnx_path.name}: output {name!r} has shape {have.shape} in ONNX Runtime "
                    f"but {want_np.shape} in torch for input {shape}"
                )
            diff = float(np.max(np.abs(want_np - have))) if want_np.size else 0.0
            if not diff <= tolerance:  # also catches NaN
                raise ExportError(
                    f"{onnx_path.name}: output {name!r} differs from torch by {diff:.3g} "
                    f"(tolerance {tolerance:g}) for input {shape}"
                )
            worst = max(worst, diff)
    return worst
