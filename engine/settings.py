"""Every setting of vcfscreen, in one pydantic-settings model.

Environment variables use the prefix ``VCF_`` and ``__`` between a group and its field,
for example ``VCF_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or ``VCF_TRITON__URL=triton:8001``.
Each component receives only its own group (``settings.kafka``, ``settings.triton``...).
The Helm chart's values and the README's configuration table follow these fields.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "VCF_"
ENV_NESTED_DELIMITER = "__"


class _Group(BaseModel):
    """A settings group: the docstring under each field is its description (docs, Helm)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")


class KafkaSecurityProtocol(str, Enum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSettings(_Group):
    """Where study events come from and where results go."""

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of Kafka brokers."""
    studies_topic: str = "ct.studies"
    """Topic of incoming StudyEvents (pointers to studies, never pixels)."""
    results_topic: str = "ct.vcf.results"
    """Topic of ScreeningResults, keyed by StudyInstanceUID."""
    dlq_topic: str = "ct.studies.dlq"
    """Dead-letter topic: poison events and undecodable studies, each with its reason."""
    group_id: str = "vcfscreen"
    """Consumer group shared by all workers of one deployment."""
    client_id: str = "vcfscreen"
    """Client id reported to the broker (appears in broker logs and quotas)."""
    security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: str | None = None
    """SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) when SASL is used."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: SecretStr | None = None
    """SASL password (a secret: masked in `vcfscreen config`)."""
    ssl_cafile: Path | None = None
    """CA bundle for TLS connections to the brokers."""
    max_poll_interval_ms: int = Field(default=300_000, gt=0)
    """Upper bound between polls before the broker evicts the consumer."""
    session_timeout_ms: int = Field(default=45_000, gt=0)
    """Consumer session timeout."""


class TritonSettings(_Group):
    """Triton Inference Server, used when ``models.backend`` is ``triton``."""

    url: str = "127.0.0.1:8001"
    """gRPC endpoint host:port."""
    http_url: str = "127.0.0.1:8000"
    """HTTP endpoint host:port (health checks)."""
    metrics_url: str = "http://127.0.0.1:8002/metrics"
    """Triton's Prometheus metrics endpoint."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Deadline of one inference request."""
    max_retries: int = Field(default=5, ge=0)
    """Retries of a request that failed because the server was unavailable."""
    retry_backoff_s: float = Field(default=0.5, gt=0)
    """First back-off delay; doubles at every retry."""
    shared_memory: bool = True
    """Pass volumes through system (or CUDA) shared memory when client and server share a host."""


class PacsSettings(_Group):
    """The PACS / vendor-neutral archive reached over DICOMweb."""

    dicomweb_url: str = "http://127.0.0.1:8042/dicom-web"
    """Root URL of the DICOMweb service (QIDO-RS, WADO-RS, STOW-RS)."""
    username: str | None = None
    """HTTP basic-auth user name, if the PACS needs one."""
    password: SecretStr | None = None
    """HTTP basic-auth password (a secret: masked in `vcfscreen config`)."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Timeout of one DICOMweb request."""
    write_back: bool = False
    """Store a DICOM SR per screened study back to the PACS over STOW-RS."""
    max_requests_per_s: float = Field(default=5.0, gt=0)
    """Rate limit for archive replays, so the PACS is not overwhelmed."""


class InferenceBackend(str, Enum):
    ONNXRUNTIME = "onnxruntime"
    TRITON = "triton"


class ModelSettings(_Group):
    """The models and how they are run."""

    backend: InferenceBackend = InferenceBackend.ONNXRUNTIME
    """`onnxruntime` runs in-process; `triton` calls Triton Inference Server."""
    dir: Path = Path(__file__).resolve().parent / "models"
    """Folder of the shipped ONNX models; point it at real weights trained elsewhere."""
    segmentation_file: str = "vertebra_seg.onnx"
    """Segmentation model file name inside ``dir``."""
    classifier_file: str = "vertebra_cls.onnx"
    """Classifier model file name inside ``dir``."""
    intra_op_threads: int = Field(default=0, ge=0)
    """ONNX Runtime intra-op threads (0: one per core)."""
    prefer_gpu: bool = True
    """Put ONNX Runtime's TensorRT and CUDA providers before the CPU when this build offers them."""
    crop_size: int = Field(default=32, ge=8)
    """Edge in model-grid voxels of the cube cut around each vertebra for the classifier (32 at 2 mm: 64 mm); must equal the classifier's."""
    crop_batch_size: int = Field(default=32, ge=1)
    """Crops per classifier run: bounds the memory of one run, not the result."""
    spine_roi_mm: float = Field(default=160.0, ge=0)
    """In-plane margin (mm) kept around the spine path for segmentation: the box is the path's extent plus this edge, so the U-Net skips lungs, bowel and body wall (0: segment the whole grid)."""
    cpu_memory_arena: bool = False
    """Keep ONNX Runtime's CPU memory arena: it then holds the peak of the largest study seen (~2.7 GB instead of ~1.3 GB at 400x176x176)."""


class PreprocessSettings(_Group):
    """Reorientation, resampling and normalisation before the models (the DALI pipeline)."""

    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    """Model voxel spacing along (z, y, x) in millimetres."""
    hu_window: tuple[float, float] = (-200.0, 1200.0)
    """HU range mapped to [0, 1] before inference."""
    device: str = "auto"
    """`auto` (GPU when present), `cpu` or `gpu` for the DALI pipeline."""
    grid_multiple: int = Field(default=16, ge=1)
    """Each model-grid extent is padded up to a multiple of this (16: a 4-level U-Net divides cleanly)."""
    max_shape: tuple[int, int, int] | None = None
    """Largest model grid (z, y, x) in voxels, each a multiple of `grid_multiple`; a larger
    study is cropped to it, centred on the body. None: never crop."""
    body_threshold_hu: float = -500.0
    """Voxels above this HU count as body when centring a crop (air is about -1000 HU)."""
    oblique_tolerance_deg: float = Field(default=1.0, gt=0, lt=45)
    """Largest angle between an image axis and the nearest patient axis still treated as
    axis-aligned; a more oblique (or gantry-tilted) series is rejected as unsupported."""
    batch_size: int = Field(default=4, ge=1)
    """Studies per DALI pipeline run (the pipeline's maximum batch size)."""
    num_threads: int = Field(default=2, ge=1)
    """DALI CPU worker threads."""

    @field_validator("spacing_mm")
    @classmethod
    def _positive_spacing(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"spacing_mm {value} must be positive in every axis")
        return value

    @field_validator("hu_window")
    @classmethod
    def _ordered_window(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"hu_window {value}: lower bound must be below upper bound")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in {"auto", "cpu", "gpu"}:
            raise ValueError(f"device {value!r} must be one of auto, cpu, gpu")
        return value

    @field_validator("max_shape", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        # `vcfscreen config --env` renders None as an empty value; read it back as None.
        if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
            return None
        return value

    @model_validator(mode="after")
    def _max_shape_on_grid(self) -> PreprocessSettings:
        if self.max_shape is not None and any(
            extent <= 0 or extent % self.grid_multiple for extent in self.max_shape
        ):
            raise ValueError(
                f"max_shape {self.max_shape} must be positive multiples of "
                f"grid_multiple {self.grid_multiple}"
            )
        return self


class SelectionSettings(_Group):
    """Which series of a study is fit for screening, and how its slices are checked.

    Header rules (modality, orientation, thickness, size) choose the series; stack rules
    (duplicates, gaps, spacing, tilt) decide whether its slices form one regular volume.
    """

    max_slice_thickness_mm: float = Field(default=3.0, gt=0)
    """Thicker reconstructions are skipped."""
    min_coverage_mm: float = Field(default=150.0, gt=0)
    """Minimum cranio-caudal extent of the series."""
    min_slices: int = Field(default=50, gt=0)
    """Minimum number of axial images."""
    max_slices: int = Field(default=2000, gt=0)
    """Series with more images are skipped (one 512x512 image costs 0.5 MB in memory)."""
    require_original: bool = True
    """Only ImageType ORIGINAL series (no derived reformats)."""
    max_obliquity_deg: float = Field(default=10.0, ge=0, lt=90)
    """Largest angle between the slice normal and the patient's head-foot axis of an axial series."""
    max_gantry_tilt_deg: float = Field(default=0.5, ge=0, lt=90)
    """Largest angle between the slice-to-slice step and the slice normal (gantry tilt)."""
    max_gap_factor: float = Field(default=1.5, gt=1)
    """A step longer than this multiple of the median slice spacing is a missing slice."""
    fill_missing_slices: int = Field(default=0, ge=0)
    """Up to this many consecutive missing slices are interpolated from their neighbours; 0 rejects any gap."""
    spacing_tolerance_mm: float = Field(default=0.1, ge=0)
    """Largest departure of a slice step from the median spacing before the series counts as unevenly spaced."""
    decode_threads: int = Field(default=2, ge=1)
    """Threads that decode images of one series in parallel."""


class GradingSettings(_Group):
    """Genant semi-quantitative thresholds and the study flag."""

    grade1_height_loss: float = Field(default=0.20, gt=0, lt=1)
    """Height loss at which grade 1 (mild) starts."""
    grade2_height_loss: float = Field(default=0.25, gt=0, lt=1)
    """Height loss at which grade 2 (moderate) starts."""
    grade3_height_loss: float = Field(default=0.40, gt=0, lt=1)
    """Height loss at which grade 3 (severe) starts."""
    flag_min_grade: int = Field(default=2, ge=1, le=3)
    """A study is flagged positive when any vertebra reaches this grade."""
    fracture_probability_threshold: float = Field(default=0.5, gt=0, lt=1)
    """Classifier probability above which a vertebra counts as fractured."""
    grade3_probability: float = Field(default=1.0, gt=0, le=1)
    """Grade-3 probability of the classifier's grade output from which a vertebra it calls
    fractured, most likely grade 1 or 2, is graded 3. 1 (the default) keeps the most likely
    grade: at 0.25 it raised three true grade-2 bodies and no grade 3 on 400 held-out phantoms."""
    neighbour_reference_loss: float = Field(default=0.15, gt=0, lt=1)
    """Posterior height loss against the neighbours' interpolated height from which the
    neighbours, not the vertebra's own posterior wall, give its expected height (crush)."""
    severe_override_margin: float = Field(default=0.10, ge=0, lt=1)
    """Height loss above grade3_height_loss by this margin is a gross collapse: noted on the
    finding when the classifier does not confirm it, and graded when only the classifier's
    grade output sees a fracture."""
    heights_from_image: bool = True
    """Read each body's heights between the endplate edges of the original scan, the
    segmentation showing where to look (engine/postprocess/morphometry.py); only on images with
    pixels of at most 1 mm and slices of at most 3 mm, and a body spanning fewer than six slices
    keeps its mask's heights. False: from the segmentation mask alone, which fills in a collapsed
    endplate and under-reads fractures."""
    metal_hu: float = Field(default=2500.0, gt=0)
    """HU from which a voxel of the original scan counts as metal or cement (cortical bone
    stays below about 2000 HU); see engine/postprocess/metal.py."""
    metal_body_mm3: float = Field(default=50.0, gt=0)
    """Volume of metal or cement inside a vertebral body from which the body is not
    measured (its grade comes from the classifier alone). A pedicle screw's tip in the body
    holds several hundred mm^3; one stray bright voxel of a 0.8 x 0.8 x 1 mm scan, 0.6."""

    @model_validator(mode="after")
    def _increasing(self) -> GradingSettings:
        if not self.grade1_height_loss < self.grade2_height_loss < self.grade3_height_loss:
            raise ValueError(
                "grade thresholds must increase: "
                f"{self.grade1_height_loss} < {self.grade2_height_loss} < {self.grade3_height_loss}"
            )
        if self.grade3_height_loss + self.severe_override_margin >= 1:
            raise ValueError(
                f"grade3_height_loss {self.grade3_height_loss} + severe_override_margin "
                f"{self.severe_override_margin} must stay below 1 (a height loss of 100%)"
            )
        return self


class WorkerSettings(_Group):
    """The streaming worker (`vcfscreen serve`)."""

    metrics_port: int = Field(default=9400, ge=0, le=65535)
    """Port of /metrics, /healthz and /readyz."""
    bind_host: str = "0.0.0.0"
    """Interface the metrics and health server listens on."""
    max_in_flight: int = Field(default=4, ge=1)
    """Studies held in memory at once across all stages."""
    queue_size: int = Field(default=2, ge=1)
    """Capacity of the queue between two stages."""
    drain_grace_s: float = Field(default=120.0, ge=0)
    """On SIGTERM, time allowed to finish in-flight studies before exiting."""
    fetch_threads: int = Field(default=2, ge=1)
    """Studies fetched at once (DICOMweb retrievals, folder reads), overlapping I/O with inference."""
    infer_threads: int = Field(default=1, ge=1)
    """Studies in inference at once; more than one pays off when Triton runs several model instances."""
    max_retries: int = Field(default=4, ge=0)
    """Retries of a transient failure (PACS 5xx or timeout, Triton unavailable) per stage before the study is dead-lettered."""
    retry_backoff_s: float = Field(default=1.0, gt=0)
    """First delay before retrying a transient failure; it doubles at every retry."""
    retry_backoff_max_s: float = Field(default=30.0, gt=0)
    """Longest delay between two retries of a transient failure."""
    revoke_grace_s: float = Field(default=30.0, ge=0)
    """On a rebalance, time to finish in-flight studies of revoked partitions; unfinished ones are re-delivered (keep below max_poll_interval_ms)."""
    lag_refresh_s: float = Field(default=5.0, gt=0)
    """Interval between refreshes of the consumer-lag gauges and of the broker check behind /readyz."""
    stall_after_s: float = Field(default=60.0, gt=0)
    """/healthz fails when the consumer loop has not turned for this long."""
    worker_id: str | None = None
    """Name of this worker in dead-letter records and result headers (default: host name and process id)."""
    key_images_dir: Path | None = None
    """Folder that receives a sagittal key image (PNG named by StudyInstanceUID) per ok study; unset: none."""


class LoggingSettings(_Group):
    """Log format and what identifiers may appear in logs."""

    level: str = "INFO"
    """Python logging level name."""
    json_format: bool = False
    """One JSON object per line instead of plain text."""
    log_uids: bool = False
    """Write StudyInstanceUIDs and accession numbers in logs; otherwise a short hash."""

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"logging level {value!r} is not a Python logging level")
        return upper


class Settings(BaseSettings):
    """All of vcfscreen's configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=None,
        extra="ignore",
        use_attribute_docstrings=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    triton: TritonSettings = TritonSettings()
    pacs: PacsSettings = PacsSettings()
    models: ModelSettings = ModelSettings()
    preprocess: PreprocessSettings = PreprocessSettings()
    selection: SelectionSettings = SelectionSettings()
    grading: GradingSettings = GradingSettings()
    worker: WorkerSettings = WorkerSettings()
    logging: LoggingSettings = LoggingSettings()


def masked_dict(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON-ready data, with every secret masked."""
    # mode="json" renders SecretStr as "**********" and paths and enums as strings.
    return settings.model_dump(mode="json")


def masked_json(settings: Settings) -> str:
    return json.dumps(masked_dict(settings), indent=2, sort_keys=False)


def as_env_lines(settings: Settings) -> list[str]:
    """The effective settings as ``VCF_GROUP__FIELD=value`` lines, secrets masked."""
    lines: list[str] = []
    for group, fields in masked_dict(settings).items():
        for name, value in fields.items():
            rendered = json.dumps(value) if isinstance(value, (list, dict)) else value
            if rendered is None:
                rendered = ""
            key = f"{ENV_PREFIX}{group}{ENV_NESTED_DELIMITER}{name}".upper()
            lines.append(f"{key}={rendered}")
    return lines


def settings_table() -> str:
    """A Markdown table of every setting: variable, default, description (README, chart)."""
    rows = ["| variable | default | description |", "|---|---|---|"]
    defaults = Settings.model_construct().model_dump(mode="json")
    for group, info in Settings.model_fields.items():
        model = info.annotation
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            default = defaults[group][name]
            shown = "" if default is None else json.dumps(default) if not isinstance(default, str) else default
            if group == "models" and name == "dir":
                shown = "(the package's engine/models)"
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| `{ENV_PREFIX}{group.upper()}{ENV_NESTED_DELIMITER}{name.upper()}` | `{shown}` | {description} |")
    return "\n".join(rows)
