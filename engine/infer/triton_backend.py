"""Inference through Triton Inference Server (see :class:`engine.infer.base.InferenceBackend`).

Beside the in-process :class:`~engine.infer.onnx_backend.OnnxBackend`; the screening core
cannot tell them apart except that this one also offers :attr:`TritonBackend.screen_tensor`:
one ``vcf_pipeline`` request per study, which segments, labels levels, cuts crops and
classifies server-side and returns what the findings are built from
(:mod:`engine.serving.pipeline_core`). ``segment`` / ``classify`` call ``vertebra_seg`` /
``vertebra_cls`` directly.

Start-up refuses a server that does not serve what this client expects (ConfigurationError
naming both sides: :mod:`engine.serving.served`). Tensors travel through system shared memory
when the server is on this host (one reusable region each way, grown to the largest study),
through CUDA shared memory when this client has a GPU (written, not run here), and over gRPC
otherwise. Unavailability is retried with TritonConnection's policy (exponential back-off,
``max_retries``, each attempt bounded by ``timeout_s``) and then raised as TransientError; a
request the server rejects is raised at once as TritonRequestError.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Self

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype
from tritonclient.utils.shared_memory import SharedMemoryException

from engine.errors import ConfigurationError, TransientError
from engine.infer.base import check_volume
from engine.infer.triton_client import (
    TritonConnection,
    TritonRequestError,
    first_line,
    is_transient,
    retry_while_unavailable,
)
from engine.models.contract import (
    CLS_FRACTURE_OUTPUT,
    CLS_GRADE_OUTPUT,
    CLS_INPUT,
    CLS_MODEL,
    SEG_CLASSES,
    SEG_INPUT,
    SEG_MODEL,
    SEG_OUTPUT,
)
from engine.serving import spec as s
from engine.serving.pipeline_core import (
    PipelineProtocolError,
    SpineReading,
    classifier_probabilities,
    decode,
)
from engine.serving.served import ServedModel, compare, weights_version
from engine.serving.shm import (
    CudaShmRegion,
    SystemShmRegion,
    client_has_gpu,
    is_local_url,
    layout,
)
from engine.settings import ModelSettings, TritonSettings

log = logging.getLogger(__name__)

_PIPELINE_OUTPUTS = [t.name for t in s.pipeline_spec().outputs]


def _unavailable(exc: InferenceServerException) -> bool:
    """An unavailable server (:func:`~engine.infer.triton_client.is_transient`: down, starting,
    stopping, including vcf_pipeline's inner calls answering "server not ready"), plus a served
    model that has gone away: the start-up check found every model ready, so NOT_FOUND / "no
    available versions" later means the server is restarting or reloading it, not that it never
    existed."""
    if is_transient(exc):
        return True
    return str(exc.status() or "") == "StatusCode.NOT_FOUND" or "no available versions" in str(exc).lower()


def _lost_region(exc: InferenceServerException) -> bool:
    """The server does not know one of our shared-memory regions (it restarted)."""
    return "shared memory region" in str(exc).lower() and "vcfscreen_" in str(exc)


def _release(regions: list[SystemShmRegion], connection: TritonConnection) -> None:
    for region in regions:
        try:
            region.close()
        except Exception as exc:  # noqa: BLE001 - best effort at exit: the server may be gone
            log.debug("releasing %s failed: %s", region.name, exc)
    connection.close()


class TritonBackend:
    """Segmentation and classification served by Triton. Build once; thread-safe (calls are serialised)."""

    def __init__(
        self,
        settings: TritonSettings,
        models: ModelSettings,
        *,
        use_pipeline: bool = True,
        ready_timeout_s: float = 30.0,
    ):
        self.settings = settings
        self.models = models
        self.use_pipeline = use_pipeline
        self.connection = TritonConnection(settings)
        self.client = self.connection.client
        self._lock = threading.Lock()
        self._in: SystemShmRegion | None = None
        self._out: SystemShmRegion | None = None
        try:
            self.connection.wait_ready(timeout_s=ready_timeout_s)
            self.served = self._check_served()
        except TransientError as exc:
            self.connection.close()
            raise ConfigurationError(f"{exc.message}; start Triton or point triton.url at it") from None
        except ConfigurationError:
            self.connection.close()
            raise
        self.transport = self._choose_transport()
        self._finalizer = weakref.finalize(self, _release, [r for r in (self._in, self._out) if r], self.connection)
        log.info(
            "Triton at %s serves %s; tensors via %s",
            settings.url, ", ".join(f"{k} {v}" for k, v in self.versions.items()), self.transport,
        )

    # ------------------------------------------------------------------ start-up

    def _reason(self, name: str) -> str:
        try:
            index = self.client.get_model_repository_index(as_json=True, client_timeout=self.settings.timeout_s)
        except InferenceServerException as exc:
            return first_line(exc)
        for entry in index.get("models", []):
            if entry.get("name") == name:
                return f"{entry.get('state', 'unknown state')}: {entry.get('reason', 'no reason given')}"
        return "not in the server's model repository"

    def _check_served(self) -> dict[str, ServedModel]:
        """Every model ready, and served exactly as :func:`engine.serving.spec.expected_specs` says."""
        url, timeout = self.settings.url, self.settings.timeout_s
        problems: list[str] = []
        served: dict[str, ServedModel] = {}
        try:
            for name, expected in s.expected_specs(self.models.crop_size).items():
                if not self.client.is_model_ready(name, client_timeout=timeout):
                    problems.append(f"model {name!r} is not ready ({self._reason(name)})")
                    continue
                metadata = self.client.get_model_metadata(name, as_json=True, client_timeout=timeout)
                config = self.client.get_model_config(name, as_json=True, client_timeout=timeout)["config"]
                served[name] = ServedModel(name, metadata, config)
                problems += compare(served[name], expected)
        except InferenceServerException as exc:
            if is_transient(exc):
                raise TransientError(f"Triton at {url} stopped answering during the start-up check: {first_line(exc)}") from None
            raise ConfigurationError(f"Triton at {url} refused the start-up check: {first_line(exc)}") from None
        if SEG_MODEL in served:
            classes = tuple(served[SEG_MODEL].parameters.get("class_names", "").split(","))
            if classes != SEG_CLASSES:
                problems.append(f"{SEG_MODEL}: the server's classes are {list(classes)}, this client expects {list(SEG_CLASSES)}")
        if s.PIPELINE_MODEL in served:
            crop = served[s.PIPELINE_MODEL].parameters.get("crop_size")
            if crop != str(self.models.crop_size):
                problems.append(
                    f"{s.PIPELINE_MODEL}: the server cuts crops of {crop} voxels, this client expects "
                    f"{self.models.crop_size} (models.crop_size)"
                )
        for name in (SEG_MODEL, CLS_MODEL):
            if name in served and weights_version(served[name]) is None:
                problems.append(f"{name}: the server's config has no weights_version / weights_sha256 (not generated by `vcfscreen triton-repo`)")
        if problems:
            raise ConfigurationError(f"Triton at {url} does not serve what this vcfscreen expects: " + "; ".join(problems))
        return served

    def _choose_transport(self) -> str:
        if not self.settings.shared_memory:
            return "gRPC (triton.shared_memory is off)"
        if not is_local_url(self.settings.url):
            return f"gRPC (Triton at {self.settings.url} is on another host)"
        region_type: type[SystemShmRegion] = SystemShmRegion
        if client_has_gpu():
            region_type = CudaShmRegion
        else:
            log.info("no NVIDIA GPU on this client: CUDA shared memory skipped, system shared memory tried instead")
        regions = [region_type(self.client, "in"), region_type(self.client, "out")]
        try:
            for region in regions:
                region.reserve(1, timeout_s=self.settings.timeout_s)
        except (InferenceServerException, SharedMemoryException, ImportError, RuntimeError) as exc:
            for region in regions:
                region.close()
            log.warning("Triton refused %s (%s): tensors go over gRPC", region_type.kind, first_line(exc))
            return f"gRPC ({region_type.kind} refused: {first_line(exc)})"
        self._in, self._out = regions
        return region_type.kind

    # ------------------------------------------------------------------ properties

    @property
    def versions(self) -> dict[str, str]:
        """The weights versions Triton's configs report, in the in-process backend's format."""
        return {name: weights_version(self.served[name]) or "unknown" for name in (SEG_MODEL, CLS_MODEL)}

    @property
    def seg_classes(self) -> tuple[str, ...]:
        return tuple(self.served[SEG_MODEL].parameters["class_names"].split(","))

    @property
    def crop_size(self) -> int:
        return int(self.served[CLS_MODEL].parameters["crop_size"])

    @property
    def grid_multiple(self) -> int:
        return int(self.served[SEG_MODEL].parameters["grid_multiple"])

    @property
    def screen_tensor(self):
        """One request per study through ``vcf_pipeline`` (None when ``use_pipeline`` is off)."""
        return self._screen_tensor if self.use_pipeline else None

    # ------------------------------------------------------------------ requests

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _infer_once(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: list[str], to_shm: Mapping[str, tuple[type, tuple[int, ...]]]
    ) -> dict[str, np.ndarray]:
        arrays = {name: np.ascontiguousarray(a) for name, a in inputs.items()}
        tensors = []
        in_offsets, in_total = layout([a.nbytes for a in arrays.values()])
        if self._in is not None:
            self._in.reserve(in_total, self.settings.timeout_s)
            self._in.write(list(arrays.values()), in_offsets)
        for (name, array), offset in zip(arrays.items(), in_offsets):
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            if self._in is not None:
                tensor.set_shared_memory(self._in.name, array.nbytes, offset)
            else:
                tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        use_out = self._out is not None and bool(to_shm)
        sizes = {name: int(np.prod(shape)) * np.dtype(dtype).itemsize for name, (dtype, shape) in to_shm.items()}
        offsets, out_total = layout(list(sizes.values()))
        out_offsets = dict(zip(sizes, offsets))
        if use_out:
            self._out.reserve(out_total, self.settings.timeout_s)
        requested = []
        for name in outputs:
            output = grpcclient.InferRequestedOutput(name)
            if use_out and name in to_shm:
                output.set_shared_memory(self._out.name, sizes[name], out_offsets[name])
            requested.append(output)
        result = self.client.infer(model, tensors, outputs=requested, client_timeout=self.settings.timeout_s)
        values = {}
        for name in outputs:
            if use_out and name in to_shm:
                shape = tuple(int(d) for d in result.get_output(name).shape)
                values[name] = self._out.read(np.dtype(to_shm[name][0]), shape, out_offsets[name])
            else:
                values[name] = result.as_numpy(name)
        return values

    def _infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: list[str],
        to_shm: Mapping[str, tuple[type, tuple[int, ...]]] | None = None,
    ) -> dict[str, np.ndarray]:
        """One request, retried while the server is unavailable (bounded: retries x timeout + back-off).

        A restarted server has forgotten our shared-memory regions: that failure is retried
        too, and every retry registers the regions again."""
        def mark_stale() -> None:
            for region in (self._in, self._out):
                if region is not None:
                    region.mark_stale()

        with self._lock:
            return retry_while_unavailable(
                self.settings, model, lambda: self._infer_once(model, inputs, outputs, to_shm or {}),
                transient=lambda exc: _unavailable(exc) or _lost_region(exc), before_retry=mark_stale,
            )

    def segment(self, volume: np.ndarray) -> np.ndarray:
        """Logits (C, D, H, W) float32 from ``vertebra_seg``."""
        check_volume(volume, self.grid_multiple)
        shape = (1, len(self.seg_classes), *volume.shape)
        out = self._infer(SEG_MODEL, {SEG_INPUT: volume[None, None]}, [SEG_OUTPUT], {SEG_OUTPUT: (np.float32, shape)})
        return out[SEG_OUTPUT][0]

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fracture probability (N,) and grade probabilities (N, 4) from ``vertebra_cls``."""
        c = self.crop_size
        if crops.ndim != 5 or crops.shape[1:] != (1, c, c, c):
            raise ValueError(f"classify() takes crops (N, 1, {c}, {c}, {c}), got shape {crops.shape}")
        if crops.dtype != np.float32:
            raise TypeError(f"classify() takes float32 crops, got {crops.dtype}")
        step = min(self.models.crop_batch_size, s.CLS_MAX_BATCH)
        logits, grades = [], []
        for start in range(0, len(crops), step):
            out = self._infer(CLS_MODEL, {CLS_INPUT: crops[start : start + step]}, [CLS_FRACTURE_OUTPUT, CLS_GRADE_OUTPUT])
            logits.append(out[CLS_FRACTURE_OUTPUT])
            grades.append(out[CLS_GRADE_OUTPUT])
        if not logits:
            return np.zeros(0, np.float32), np.zeros((0, 4), np.float32)
        return classifier_probabilities(np.concatenate(logits), np.concatenate(grades))

    def _screen_tensor(self, tensor: np.ndarray, spacing_mm: np.ndarray) -> SpineReading:
        """The whole study in one ``vcf_pipeline`` request."""
        check_volume(tensor, self.grid_multiple)
        spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(3)
        out = self._infer(
            s.PIPELINE_MODEL,
            {s.PIPE_VOLUME: tensor, s.PIPE_SPACING: spacing},
            _PIPELINE_OUTPUTS,
            {s.PIPE_CLASS_MAP: (np.uint8, tensor.shape)},
        )
        try:
            return decode(out)
        except PipelineProtocolError as exc:
            raise TritonRequestError(f"{s.PIPELINE_MODEL}: {exc}") from None
