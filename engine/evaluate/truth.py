"""Reading the ground truth that ``vcfscreen phantom`` writes beside each study.

A study folder holds the DICOM files, ``truth.json`` and, optionally, ``labels.npz``:

* ``truth.json``: ``study_instance_uid``; ``vertebrae``, a list of ``{level,
  centroid_lps_mm, genant_grade, height_loss?, morphology?, ...}`` cranial to caudal; and
  ``confounders``, a list of ``{type, level? | levels?, ...}`` (a confounder without levels,
  such as a hip prosthesis, concerns the whole study); ``excluded_vertebrae``, the bodies
  cut by the edge of the field of view, which no metric counts.
* ``labels.npz``: key ``labels``, uint8 on the screening series' grid; value ``v`` is the
  vertebral body whose truth record has ``label_value == v`` (by default vertebra ``v - 1``),
  :data:`PARTIAL_LABEL` a body only partly in the field of view (no truth record, ignored
  by every metric). Key ``affine`` (4x4, index -> LPS mm) when the writer stores it;
  otherwise the grid is taken to be the screened series' (up to axis flips, resolved
  from the truth centroids: see :func:`engine.evaluate.dice.labels_affine_from_truth`).

The loader is strict about what the metrics need and lenient about everything else, so a
newer phantom with more fields still evaluates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import VcfScreenError
from engine.results import level_index

TRUTH_FILE = "truth.json"
LABELS_FILE = "labels.npz"
PARTIAL_LABEL = 255
"""Label of a vertebral body only partly inside the field of view (not in the truth list)."""


class TruthFileError(VcfScreenError):
    """A truth.json or labels.npz that cannot be read as the phantom contract describes."""

    code = "truth"


@dataclass(frozen=True)
class TruthVertebra:
    level: str
    centroid_lps_mm: tuple[float, float, float]
    genant_grade: int
    label: int
    """Value of this vertebra's body in labels.npz (``label_value``; else its position plus one)."""
    height_loss: float | None = None
    morphology: str | None = None


@dataclass(frozen=True)
class Confounder:
    type: str
    levels: tuple[str, ...] = ()
    """Levels the confounder was planted at; empty when it concerns the whole study."""
    variant: str | None = None
    """Which transitional anatomy (``11_thoracic``, ``13_thoracic``, ...) a ``transitional`` one is."""


@dataclass(frozen=True)
class StudyTruth:
    study_instance_uid: str
    vertebrae: tuple[TruthVertebra, ...]
    confounders: tuple[Confounder, ...] = ()
    folder: Path | None = None
    excluded_levels: tuple[str, ...] = ()
    """Levels whose body is only partly in the field of view (``excluded_vertebrae``)."""

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(v.level for v in self.vertebrae)

    @property
    def max_grade(self) -> int:
        return max((v.genant_grade for v in self.vertebrae), default=0)

    @property
    def anatomy(self) -> str:
        """The spine's transitional variant (``transitional`` when the truth does not name it),
        or ``typical``."""
        found = next((c for c in self.confounders if c.type == "transitional"), None)
        return "typical" if found is None else (found.variant or "transitional")


@dataclass(frozen=True)
class TruthLabels:
    labels: np.ndarray
    """uint8 label volume on the screening series' grid."""
    affine: np.ndarray | None
    """Index -> LPS affine of ``labels`` when the file stores it."""


def _where(source: Path | None) -> str:
    return str(source) if source is not None else "truth record"


def parse_truth(data: dict, source: Path | None = None) -> StudyTruth:
    """A :class:`StudyTruth` from the decoded JSON object; names the bad field when it fails."""
    where = _where(source)
    if not isinstance(data, dict):
        raise TruthFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    uid = data.get("study_instance_uid")
    if not isinstance(uid, str) or not uid:
        raise TruthFileError(f"{where}: 'study_instance_uid' must be a non-empty string, got {uid!r}")
    records = data.get("vertebrae")
    if not isinstance(records, list):
        raise TruthFileError(f"{where}: 'vertebrae' must be a list, got {type(records).__name__}")
    vertebrae = []
    for position, record in enumerate(records):
        try:
            level = str(record["level"])
            level_index(level)
            centroid = tuple(float(c) for c in record["centroid_lps_mm"])
            grade = int(record["genant_grade"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TruthFileError(f"{where}: vertebra #{position} is unreadable ({exc})") from None
        if len(centroid) != 3 or not np.all(np.isfinite(centroid)):
            raise TruthFileError(f"{where}: vertebra {level} has centroid {centroid}; expected 3 finite mm values")
        if not 0 <= grade <= 3:
            raise TruthFileError(f"{where}: vertebra {level} has genant_grade {grade}; expected 0..3")
        loss = record.get("height_loss")
        label = record.get("label_value", position + 1)
        if not isinstance(label, int) or not 0 < label < PARTIAL_LABEL:
            raise TruthFileError(f"{where}: vertebra {level} has label_value {label!r}; expected 1..254")
        vertebrae.append(TruthVertebra(
            level=level,
            centroid_lps_mm=centroid,  # type: ignore[arg-type]
            genant_grade=grade,
            label=label,
            height_loss=None if loss is None else float(loss),
            morphology=record.get("morphology"),
        ))
    confounders = []
    for position, record in enumerate(data.get("confounders") or []):
        if not isinstance(record, dict) or not isinstance(record.get("type"), str):
            raise TruthFileError(f"{where}: confounder #{position} has no 'type': {record!r}")
        levels = record.get("levels")
        if levels is None:
            levels = [record["level"]] if record.get("level") else []
        variant = record.get("variant")
        confounders.append(Confounder(type=record["type"], levels=tuple(str(lv) for lv in levels),
                                      variant=variant if isinstance(variant, str) else None))
    excluded = tuple(str(e["level"]) for e in data.get("excluded_vertebrae") or [] if isinstance(e, dict) and "level" in e)
    return StudyTruth(uid, tuple(vertebrae), tuple(confounders), source.parent if source else None, excluded)


def load_truth(folder: Path) -> StudyTruth:
    """The truth of one study folder."""
    path = Path(folder) / TRUTH_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TruthFileError(f"{folder} has no {TRUTH_FILE}") from None
    except json.JSONDecodeError as exc:
        raise TruthFileError(f"{path} is not valid JSON ({exc})") from None
    return parse_truth(data, path)


def load_labels(folder: Path) -> TruthLabels | None:
    """The body label volume of a study folder, or None when the phantom wrote none."""
    path = Path(folder) / LABELS_FILE
    if not path.exists():
        return None
    try:
        with np.load(path) as archive:
            labels = np.asarray(archive["labels"])
            affine = np.asarray(archive["affine"], dtype=float) if "affine" in archive.files else None
    except (KeyError, ValueError, OSError) as exc:
        raise TruthFileError(f"{path} cannot be read as a label volume ({exc})") from None
    if labels.ndim != 3:
        raise TruthFileError(f"{path}: 'labels' must be 3-D, got shape {labels.shape}")
    if affine is not None and affine.shape != (4, 4):
        raise TruthFileError(f"{path}: 'affine' must be 4x4, got shape {affine.shape}")
    return TruthLabels(labels.astype(np.uint8, copy=False), affine)


def study_folders(root: Path) -> list[Path]:
    """Study folders (those holding a truth.json) at or below ``root``, in name order."""
    root = Path(root)
    if (root / TRUTH_FILE).is_file():
        return [root]
    return sorted(path.parent for path in root.rglob(TRUTH_FILE))
