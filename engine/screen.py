"""Screening one study, end to end, in-process: the core the CLI, the worker and the benchmarks call.

load (select series, decode to HU) -> preprocess (DALI) -> cut to the region around the spine
-> segment -> label levels -> cut crops -> classify (:func:`engine.serving.pipeline_core.read_spine`,
the same function Triton's pipeline model runs) -> measure, grade, fuse -> :class:`ScreeningResult`.

The :class:`Screener` builds its expensive parts once (DALI pipeline, inference backend) and
is reused for every study. A study that fails never raises out of :meth:`Screener.screen`:
it gets a result with status ``not_eligible`` or ``error`` and the reason. A study whose
spine the models could not read (no vertebral body found, or none given its level) is
``not_eligible`` too, never a negative result (see
:func:`engine.postprocess.levels.unreported_spine`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom import Dataset

from engine.dicom import load_study
from engine.errors import StudyError
from engine.infer.base import InferenceBackend
from engine.logs import study_ref

# cut_crops, body_probability_crop and MASK_MARGIN live in a light module (the Triton
# pipeline model imports them without DALI / pydicom) and are re-exported from here.
from engine.postprocess.crops import (  # noqa: F401
    MASK_MARGIN,
    body_probability_crop,
    cut_crops,
    shifted_affine,
)
from engine.postprocess.findings import VertebraInput, findings_from_vertebrae
from engine.postprocess.fusion import ClassifierOutput
from engine.postprocess.levels import LevelResult, count_doubt_after_grading, split_doubt, unreported_spine
from engine.postprocess.metal import dense_volume_mm3
from engine.postprocess.top_levels import TOP_LEVELS_FILE, cached_model
from engine.preprocess import ModelInput, Preprocessor
from engine.results import LevelNaming, ScreeningResult, pipeline_version
from engine.serving.pipeline_core import SpineReading, read_spine
from engine.settings import InferenceBackend as BackendKind
from engine.settings import Settings
from engine.spine_roi import spine_region
from engine.volume import Volume, spacing_of

log = logging.getLogger(__name__)

NEUTRAL = ClassifierOutput(0.0, (1.0, 0.0, 0.0, 0.0))
"""Classifier output for levels that are not classified (S1)."""


@dataclass
class StudyOutput:
    """A result with what produced it (for key images, SR and evaluation)."""

    result: ScreeningResult
    volume: Volume | None = None
    model_input: ModelInput | None = None
    class_map: np.ndarray | None = field(default=None, repr=False)
    levels: LevelResult | None = None


def make_backend(settings: Settings) -> InferenceBackend:
    """The inference backend the settings ask for, built once."""
    if settings.models.backend == BackendKind.TRITON:
        from engine.infer.triton_backend import TritonBackend  # only when asked for

        return TritonBackend(settings.triton, settings.models, preprocess=settings.preprocess)
    from engine.infer.onnx_backend import OnnxBackend

    return OnnxBackend(settings.models, settings.preprocess)


class Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


class Screener:
    """The embedded screening core. Build once; call :meth:`screen` for every study."""

    def __init__(self, settings: Settings, backend: InferenceBackend | None = None):
        self.settings = settings
        self.backend = backend if backend is not None else make_backend(settings)
        self.preprocessor = Preprocessor(settings.preprocess)
        self.pipeline_version = pipeline_version(self.backend.versions)
        # The top vertebrae's cue for where the thoracic spine begins (absent file: names by
        # the ribs and the sacrum alone); Triton's vcf_pipeline reads the same file.
        self.top_model = cached_model(settings.models.dir / TOP_LEVELS_FILE)

    def screen(self, source: Path | Sequence[Dataset], study_hint: str = "unknown") -> StudyOutput:
        """Screen one study folder (or its instances); never raises for a bad study."""
        timer = Timer()
        volume: Volume | None = None
        try:
            with timer.stage("load"):
                loaded = load_study(source, self.settings.selection)
            volume = loaded.volume
            return self.screen_volume(volume, timer)
        except StudyError as exc:
            uid = volume.study_instance_uid if volume is not None else study_hint
            log.info("%s not screened: %s", study_ref(uid), exc.code)
            result = ScreeningResult.from_exception(
                uid, exc, series_instance_uid=volume.series_instance_uid if volume else None,
                pipeline_version=self.pipeline_version, timings_ms=timer.ms,
            )
            return StudyOutput(result=result, volume=volume)
        except Exception as exc:  # a bug or an unexpected input: reported, the run goes on
            uid = volume.study_instance_uid if volume is not None else study_hint
            log.exception("%s failed unexpectedly", study_ref(uid))
            result = ScreeningResult.error(
                uid, exc, series_instance_uid=volume.series_instance_uid if volume else None,
                pipeline_version=self.pipeline_version, timings_ms=timer.ms,
            )
            return StudyOutput(result=result, volume=volume)

    def screen_volume(self, volume: Volume, timer: Timer | None = None) -> StudyOutput:
        """Screen a loaded volume (raises StudyError for a study that cannot be screened)."""
        timer = timer or Timer()
        with timer.stage("preprocess"):
            (model_input,) = self.preprocessor([volume])
        return self.screen_model_input(volume, model_input, timer)

    def spine_input(self, model_input: ModelInput) -> ModelInput:
        """The model input cut in-plane to the region around the spine (see :mod:`engine.spine_roi`).

        Everything after segmentation (levels, crops, morphometry, key images, evaluation)
        works on this grid through its own affine, so nothing maps back to the whole grid.
        """
        region = spine_region(
            model_input.tensor, model_input.spacing, self.settings.models.spine_roi_mm,
            self.settings.preprocess.grid_multiple, self.settings.preprocess.hu_window,
        )
        if region.shape == model_input.tensor.shape[1:]:
            return model_input
        (y0, x0), (y1, x1) = region.lo, region.hi
        content = model_input.content_shape
        return replace(
            model_input,
            tensor=np.ascontiguousarray(model_input.tensor[:, y0:y1, x0:x1]),
            affine=shifted_affine(model_input.affine, np.array([0, y0, x0])),
            content_shape=(content[0], max(0, min(content[1], y1) - y0), max(0, min(content[2], x1) - x0)),
            crop_start=(model_input.crop_start[0], model_input.crop_start[1] + y0, model_input.crop_start[2] + x0),
        )

    def screen_model_input(self, volume: Volume, model_input: ModelInput, timer: Timer) -> StudyOutput:
        with timer.stage("preprocess"):
            model_input = self.spine_input(model_input)
        spacing = spacing_of(model_input.affine)
        screen_tensor = getattr(self.backend, "screen_tensor", None)
        if callable(screen_tensor):
            # One request for the whole reading (Triton's vcf_pipeline runs read_spine server-side).
            with timer.stage("infer"):
                reading = screen_tensor(model_input.tensor, spacing)
        else:
            reading = self._read_spine(model_input.tensor, spacing, timer)
        with timer.stage("postprocess"):
            inputs = []
            for k, v in enumerate(reading.levels.vertebrae):
                soft, lo = reading.soft_masks[k]
                classifier = (
                    ClassifierOutput.from_outputs(reading.fracture_probability[k], reading.grade_probabilities[k])
                    if reading.classified[k] else NEUTRAL
                )
                affine = shifted_affine(model_input.affine, lo)
                metal = dense_volume_mm3(volume.hu, volume.affine, soft, affine, self.settings.grading.metal_hu)
                inputs.append(VertebraInput(v.level, soft, affine, classifier, cut_by_scan=v.cut_by_scan,
                                            metal_mm3=metal))
            image = (volume.hu, volume.affine) if self.settings.grading.heights_from_image else (None, None)
            findings = findings_from_vertebrae(inputs, self.settings.grading, *image)
        return self._output(volume, model_input, findings, timer, reading.class_map, reading.levels)

    def _read_spine(self, tensor: np.ndarray, spacing: np.ndarray, timer: Timer) -> SpineReading:
        """:func:`read_spine` with this process's backend; model time is timed as ``segment`` and
        ``classify``, the rest (levels, crops, soft masks) as ``postprocess``."""
        def segment(volume: np.ndarray) -> np.ndarray:
            with timer.stage("segment"):
                return self.backend.segment(volume)

        def classify(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with timer.stage("classify"):
                return self.backend.classify(crops)

        models_before = timer.ms.get("segment", 0.0) + timer.ms.get("classify", 0.0)
        start = time.perf_counter()
        reading = read_spine(tensor, spacing, segment, classify, self.backend.crop_size, self.settings.preprocess.hu_window,
                             top_model=self.top_model)
        models = timer.ms.get("segment", 0.0) + timer.ms.get("classify", 0.0) - models_before
        timer.ms["postprocess"] = timer.ms.get("postprocess", 0.0) + (time.perf_counter() - start) * 1000.0 - models
        return reading

    def _output(self, volume: Volume, model_input: ModelInput, findings, timer: Timer, class_map,
                levels: LevelResult) -> StudyOutput:
        unreported = unreported_spine(levels)
        if unreported is not None:
            log.info("%s not screened: %s", study_ref(volume.study_instance_uid), unreported.code)
            result = ScreeningResult.not_eligible(
                volume.study_instance_uid, unreported, series_instance_uid=volume.series_instance_uid,
                pipeline_version=self.pipeline_version, timings_ms=timer.ms,
            )
        else:
            notes = count_doubt_after_grading(levels.notes, [(f.level, f.genant_grade) for f in findings])
            notes = split_doubt(notes, [(f.level, f.centroid_lps_mm) for f in findings])
            if notes != levels.notes:
                levels = replace(levels, notes=notes)
            result = ScreeningResult.from_findings(
                volume.study_instance_uid,
                volume.series_instance_uid,
                findings,
                pipeline_version=self.pipeline_version,
                grading=self.settings.grading,
                timings_ms=timer.ms,
                level_naming=LevelNaming(anchor=levels.anchor, notes=tuple(levels.notes), doubt=levels.doubt,
                                         unnamed_bodies=levels.unnamed),
            )
        return StudyOutput(result, volume, model_input, class_map, levels)
