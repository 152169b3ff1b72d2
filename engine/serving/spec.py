"""The served models, declared once: names, tensors, dims, dtypes and batching.

The CPU and GPU repositories (:mod:`engine.serving.repository`), the TensorRT builder's
optimisation profiles (:mod:`engine.serving.tensorrt_build`), the ONNX shape check
(:mod:`engine.serving.onnx_facts`) and the client's start-up check
(:mod:`engine.infer.triton_backend`) all read these declarations, so a tensor name, a
shape or a batch size cannot differ between them. Model and tensor names come from
:mod:`engine.models.contract`; class counts and the crop size from the ONNX metadata on the
generating side and from the contract and the settings on the client's side (the check
compares the two).

Dims follow Triton's convention: without the batch axis when ``max_batch_size > 0``; ``-1``
is a dynamic extent. Standard library and the contract only: this module runs in the
client, in the generator and inside Triton.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.models.contract import (
    CLS_FRACTURE_OUTPUT,
    CLS_GRADE_OUTPUT,
    CLS_INPUT,
    CLS_MODEL,
    GRADE_CLASSES,
    SEG_CLASSES,
    SEG_INPUT,
    SEG_MODEL,
    SEG_OUTPUT,
    ModelMetadata,
)

PIPELINE_MODEL = "vcf_pipeline"
"""The model a client calls: one request per study (contract: Triton model names)."""
CPU, GPU = "cpu", "gpu"
PROFILES = (CPU, GPU)

SEG_MAX_BATCH = 1
"""One volume per segmentation run: study extents differ, so volumes never batch, and a
batch axis of 1 keeps the ONNX/TensorRT ``batch`` axis explicit."""
CLS_MAX_BATCH = 32
"""Crops per classifier run; the pipeline splits a study with more vertebrae into runs of this."""

# vcf_pipeline tensors. Inputs: the preprocessed model-grid volume and its voxel spacing.
PIPE_VOLUME = "volume"
PIPE_SPACING = "spacing_mm"
# Outputs: per voxel, the class map; per vertebra (superior to inferior, S1 last), what
# engine.postprocess.levels found, the soft body mask cut for morphometry and the classifier's
# probabilities. Variable-length per-vertebra masks are concatenated, flattened in C order.
PIPE_CLASS_MAP = "class_map"
PIPE_LEVELS = "level_names"
PIPE_CENTROIDS = "centroids"
PIPE_BOXES = "boxes"
PIPE_RIB_BEARING = "rib_bearing"
PIPE_CUT_BY_SCAN = "cut_by_scan"
PIPE_LOCAL_MASKS = "local_masks"
PIPE_SOFT_MASKS = "soft_masks"
PIPE_CLASSIFIED = "classified"
PIPE_FRACTURE = "fracture_probability"
PIPE_GRADES = "grade_probabilities"
PIPE_ANCHOR = "level_anchor"
PIPE_NOTES = "level_notes"
PIPE_UNNAMED = "unnamed_bodies"  # bodies found but given no level (not among the per-vertebra outputs)

NUMPY_DTYPES = {
    "FP32": "float32",
    "FP64": "float64",
    "UINT8": "uint8",
    "INT64": "int64",
    "BOOL": "bool",
    "BYTES": "object",
}
"""Triton data type -> numpy dtype name (BYTES tensors are numpy object arrays of bytes)."""


def config_dtype(dtype: str) -> str:
    """The ``ModelConfig`` enum name of a data type: Triton's metadata says BYTES, its configs TYPE_STRING."""
    return "TYPE_STRING" if dtype == "BYTES" else f"TYPE_{dtype}"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    """Triton data type without the ``TYPE_`` prefix (``FP32``, ``UINT8``, ``BYTES``...)."""
    dims: tuple[int, ...]
    """Extents without the batch axis when the model batches; -1 is dynamic."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    max_batch_size: int
    """0: the model does not batch and ``dims`` are full shapes."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def full_shape(self, tensor: TensorSpec) -> tuple[int, ...]:
        """The shape Triton's model metadata reports: with a leading -1 when the model batches."""
        return ((-1,) if self.max_batch_size > 0 else ()) + tensor.dims

    def tensor(self, name: str) -> TensorSpec:
        for spec in self.inputs + self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no tensor {name!r}")


@dataclass(frozen=True)
class ServedWeights:
    """One ONNX file as the repository serves it: its metadata and identity."""

    file_name: str
    metadata: ModelMetadata
    sha256: str

    @property
    def version(self) -> str:
        """``<weights version>+<sha256 prefix>``: the same string the in-process backend reports."""
        return f"{self.metadata.version}+{self.sha256[:12]}"


@dataclass(frozen=True)
class ModelFacts:
    """Both models' weights: everything about a repository that comes from the ONNX files."""

    seg: ServedWeights
    cls: ServedWeights


def segmenter_spec(num_classes: int = len(SEG_CLASSES)) -> ModelSpec:
    return ModelSpec(
        name=SEG_MODEL,
        max_batch_size=SEG_MAX_BATCH,
        inputs=(TensorSpec(SEG_INPUT, "FP32", (1, -1, -1, -1)),),
        outputs=(TensorSpec(SEG_OUTPUT, "FP32", (num_classes, -1, -1, -1)),),
    )


def classifier_spec(crop_size: int, num_grades: int = len(GRADE_CLASSES)) -> ModelSpec:
    c = crop_size
    return ModelSpec(
        name=CLS_MODEL,
        max_batch_size=CLS_MAX_BATCH,
        inputs=(TensorSpec(CLS_INPUT, "FP32", (1, c, c, c)),),
        outputs=(
            TensorSpec(CLS_FRACTURE_OUTPUT, "FP32", (1,)),
            TensorSpec(CLS_GRADE_OUTPUT, "FP32", (num_grades,)),
        ),
    )


def pipeline_spec(num_grades: int = len(GRADE_CLASSES)) -> ModelSpec:
    return ModelSpec(
        name=PIPELINE_MODEL,
        max_batch_size=0,
        inputs=(TensorSpec(PIPE_VOLUME, "FP32", (-1, -1, -1)), TensorSpec(PIPE_SPACING, "FP64", (3,))),
        outputs=(
            TensorSpec(PIPE_CLASS_MAP, "UINT8", (-1, -1, -1)),
            TensorSpec(PIPE_LEVELS, "BYTES", (-1,)),
            TensorSpec(PIPE_CENTROIDS, "FP64", (-1, 3)),
            TensorSpec(PIPE_BOXES, "INT64", (-1, 6)),
            TensorSpec(PIPE_RIB_BEARING, "BOOL", (-1,)),
            TensorSpec(PIPE_CUT_BY_SCAN, "BOOL", (-1,)),
            TensorSpec(PIPE_LOCAL_MASKS, "BOOL", (-1,)),
            TensorSpec(PIPE_SOFT_MASKS, "FP32", (-1,)),
            TensorSpec(PIPE_CLASSIFIED, "BOOL", (-1,)),
            TensorSpec(PIPE_FRACTURE, "FP32", (-1,)),
            TensorSpec(PIPE_GRADES, "FP32", (-1, num_grades)),
            TensorSpec(PIPE_ANCHOR, "BYTES", (1,)),
            TensorSpec(PIPE_NOTES, "BYTES", (-1,)),
            TensorSpec(PIPE_UNNAMED, "INT64", (1,)),
        ),
    )


def served_specs(num_seg_classes: int, crop_size: int, num_grades: int = len(GRADE_CLASSES)) -> dict[str, ModelSpec]:
    """The three served models, by name."""
    specs = (segmenter_spec(num_seg_classes), classifier_spec(crop_size, num_grades), pipeline_spec(num_grades))
    return {spec.name: spec for spec in specs}


def specs_from_facts(facts: ModelFacts) -> dict[str, ModelSpec]:
    """The served models as the ONNX files define them (the generating side)."""
    return served_specs(
        len(facts.seg.metadata.class_names), facts.cls.metadata.crop_size, len(facts.cls.metadata.class_names)
    )


def expected_specs(crop_size: int) -> dict[str, ModelSpec]:
    """The served models as this client's code expects them (the contract and ``models.crop_size``)."""
    return served_specs(len(SEG_CLASSES), crop_size, len(GRADE_CLASSES))


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class CpuOptions:
    """Knobs of the CPU profile (ONNX Runtime inside the Python backend)."""

    seg_threads: int = 2
    """ONNX Runtime intra-op threads of the segmentation instance (the heavy model)."""
    cls_threads: int = 1
    """ONNX Runtime intra-op threads of the classifier instance."""
    seg_instances: int = 1
    cls_instances: int = 1
    pipeline_instances: int = 2
    """Two pipeline instances overlap one study's labelling with the next one's segmentation."""
    cls_queue_delay_us: int = 2000
    """How long the classifier's dynamic batcher waits to merge crops of concurrent studies."""


@dataclass(frozen=True)
class TrtProfile:
    """One TensorRT optimisation profile of a dynamic input: smallest, typical, largest shape."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def render(self) -> str:
        return ";".join("x".join(str(v) for v in shape) for shape in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class GpuOptions:
    """Knobs of the GPU profile (TensorRT plans)."""

    fp16: bool = True
    """Build FP16 plans (tensor cores); the builder keeps FP32 where TensorRT finds it needs it."""
    seg_opt_dhw: tuple[int, int, int] = (320, 192, 192)
    """Typical TAP model grid at 2 mm (64 cm cranio-caudal, 38 cm field of view): TensorRT tunes for it."""
    seg_max_dhw: tuple[int, int, int] = (512, 320, 320)
    """Largest grid the plan accepts; set ``preprocess.max_shape`` at or below it."""
    cls_opt_batch: int = 16
    seg_instances: int = 1
    cls_instances: int = 1
    pipeline_instances: int = 2
    cls_queue_delay_us: int = 1000
    workspace_mib: int = 4096
    """TensorRT builder workspace."""


def seg_trt_profile(grid_multiple: int, options: GpuOptions) -> TrtProfile:
    g = grid_multiple
    for extent in options.seg_opt_dhw + options.seg_max_dhw:
        if extent % g:
            raise ValueError(f"TensorRT profile extent {extent} is not a multiple of the model grid {g}")
    return TrtProfile(min=(1, 1, g, g, g), opt=(1, 1, *options.seg_opt_dhw), max=(1, 1, *options.seg_max_dhw))


def cls_trt_profile(crop_size: int, options: GpuOptions) -> TrtProfile:
    c = crop_size
    return TrtProfile(min=(1, 1, c, c, c), opt=(options.cls_opt_batch, 1, c, c, c), max=(CLS_MAX_BATCH, 1, c, c, c))
