"""What an exported model promises: tensor names, class names and its metadata.

Imported by the exporter (with torch) and by every runtime that loads the ONNX files (the
in-process ONNX Runtime backend, the Triton Python backend) without torch, so this module
depends on nothing but the standard library and the error tree.

Each exported ONNX file carries a :class:`ModelMetadata` in its ``metadata_props``
(string key/value pairs, keys prefixed ``vcf.``). A runtime reads it back with
:meth:`ModelMetadata.from_props` and refuses a file whose metadata is missing or does not
match what the code expects, instead of producing plausible-looking nonsense (a model
trained at another spacing or HU window segments, just badly).

Segmentation classes (:data:`SEG_CLASSES`), and why these:

* ``vertebral_body``: one class for every body from C2 to L5; instances come from
  connected components and levels from counting, so the network need not name levels
  (per-level classes need far more data and fail by whole-level shifts).
* ``intervertebral_disc``: the thin (4-10 mm, 2-5 voxels at 2 mm) gap between two bodies.
  Labelling it makes neighbouring bodies separate components even where a collapsed body
  or osteophytes nearly bridge the gap, which is where counting goes wrong.
* ``sacrum``: the caudal anchor. A TAP CT nearly always holds the sacrum and often
  misses the cervical spine, so levels are counted upwards from it (L5 is the last body
  above it); it also recognises a sacralised L5.
* ``rib_head``: the head and neck of each rib next to its vertebra (costovertebral joint).
  The last rib-bearing body is T12: a second, independent anchor that checks the count from
  the sacrum and exposes transitional anatomy (11 or 13 rib pairs, six lumbar vertebrae).

The classifier's grade classes are the four Genant grades 0..3 (:data:`GRADE_CLASSES`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from engine.errors import ConfigurationError

FORMAT_VERSION = "1"
"""Version of the metadata layout below; bump when a key changes meaning."""

SEG_MODEL = "vertebra_seg"
CLS_MODEL = "vertebra_cls"

SEG_INPUT = "volume"
SEG_OUTPUT = "seg_logits"
CLS_INPUT = "crops"
CLS_FRACTURE_OUTPUT = "fracture_logit"
CLS_GRADE_OUTPUT = "grade_logits"

SEG_CLASSES: tuple[str, ...] = (
    "background",
    "vertebral_body",
    "intervertebral_disc",
    "sacrum",
    "rib_head",
)
GRADE_CLASSES: tuple[str, ...] = ("grade0", "grade1", "grade2", "grade3")

OUTPUTS_LOGITS = "logits"
"""Outputs are raw logits: softmax / sigmoid are applied by the runtime, not in the graph."""

_PREFIX = "vcf."


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _join(values: tuple[object, ...]) -> str:
    return ",".join(str(value) for value in values)


@dataclass(frozen=True)
class ModelMetadata:
    """The facts a runtime must check before trusting a model file."""

    model: str
    """Role of the model: ``vertebra_seg`` or ``vertebra_cls`` (also its Triton name)."""
    architecture: str
    """Network family, e.g. ``monai.UNet`` or ``monai.ResNet``."""
    depth: int
    """Resolution levels of the U-Net, or ResNet depth (18, 34, 50)."""
    widths: tuple[int, ...]
    """Feature channels per level / stage."""
    version: str
    """Weights version (training run), reported in ``pipeline_version``."""
    input_spacing_mm: tuple[float, float, float]
    """Voxel spacing (z, y, x) the model was trained at."""
    hu_window: tuple[float, float]
    """HU range mapped to [0, 1] in the training data."""
    class_names: tuple[str, ...]
    """Name of each output channel (segmentation) or grade (classifier)."""
    grid_multiple: int = 0
    """Segmentation: each spatial extent must be a multiple of this (0 for the classifier)."""
    crop_size: int = 0
    """Classifier: edge of the cubic crop in voxels (0 for the segmentation model)."""
    outputs: str = OUTPUTS_LOGITS
    """What the outputs hold; only ``logits`` exists in format 1."""
    format: str = FORMAT_VERSION
    """Metadata layout version."""

    def __post_init__(self) -> None:
        if any("," in name or not name for name in self.class_names):
            raise ValueError(f"class names {self.class_names} must be non-empty and free of commas")

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` of an ONNX file: every field as a ``vcf.<name>`` string."""
        props: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            props[_PREFIX + field.name] = _join(value) if isinstance(value, tuple) else str(value)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> ModelMetadata:
        """Read the metadata back; ``source`` (a file name) goes into every error message."""
        parsers = {
            "depth": int,
            "widths": _ints,
            "input_spacing_mm": _floats,
            "hu_window": _floats,
            "class_names": _names,
            "grid_multiple": int,
            "crop_size": int,
        }
        missing = [_PREFIX + f.name for f in fields(cls) if _PREFIX + f.name not in props]
        if missing:
            raise ConfigurationError(
                f"{source} lacks the metadata {', '.join(missing)}: it was not exported by "
                "engine.models.export (re-export it, or train with `vcfscreen train`)"
            )
        fmt = props[_PREFIX + "format"]
        if fmt != FORMAT_VERSION:
            raise ConfigurationError(
                f"{source} has metadata format {fmt!r}; this vcfscreen reads format {FORMAT_VERSION!r}"
            )
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = props[_PREFIX + field.name]
            try:
                values[field.name] = parsers.get(field.name, str)(raw)
            except ValueError:
                raise ConfigurationError(f"{source}: metadata {_PREFIX}{field.name}={raw!r} is malformed") from None
        spacing, window = values["input_spacing_mm"], values["hu_window"]
        if len(spacing) != 3 or len(window) != 2:  # type: ignore[arg-type]
            raise ConfigurationError(
                f"{source}: metadata input_spacing_mm={spacing} needs 3 values and hu_window={window} 2"
            )
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a model file: with the weights version, what identifies the weights run."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
