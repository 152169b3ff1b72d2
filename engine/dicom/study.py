"""Loading one study: scan, group, select, assemble -- the entry point of ``engine.dicom``.

``load_study`` accepts a folder (read recursively, any file names), a list of in-memory
pydicom datasets (instances fetched over DICOMweb), or headers already scanned. Whatever
goes wrong with the input ends as a :class:`~engine.errors.StudyError` subclass with a
message a radiology IT person can act on; anything else escaping is a bug of ours.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom.dataset import Dataset

from engine.dicom.assemble import assemble_volume
from engine.dicom.headers import (
    InstanceHeader,
    headers_from_datasets,
    scan_folder,
    study_uids,
)
from engine.dicom.series import (
    Series,
    SeriesDecision,
    evaluate_series,
    group_series,
    select_series,
)
from engine.errors import CorruptStudyError, NotEligibleError, StudyError
from engine.logs import study_ref
from engine.settings import SelectionSettings
from engine.volume import Volume

log = logging.getLogger(__name__)

Source = Path | str | Sequence[Dataset] | Sequence[InstanceHeader]
_LISTED = 3


@dataclass
class LoadedStudy:
    """A study ready for preprocessing: its volume, why that series, and what was odd.

    ``decisions`` has one entry per series of the study; ``warnings`` lists the oddities
    that were handled (files that could not be read, duplicates dropped, slices filled,
    lossy compression...), in words, without identifiers.
    """

    volume: Volume
    decisions: list[SeriesDecision]
    warnings: list[str] = field(default_factory=list)

    @property
    def study_instance_uid(self) -> str:
        return self.volume.study_instance_uid

    @property
    def series_instance_uid(self) -> str:
        return self.volume.series_instance_uid


def _headers_of(source: Source) -> list[InstanceHeader]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise NotEligibleError(
                f"nothing to read: the study folder {path.name!r} does not exist"
            )
        return scan_folder(path)
    items = list(source)
    if all(isinstance(item, InstanceHeader) for item in items):
        return items  # type: ignore[return-value]
    return headers_from_datasets(items)  # type: ignore[arg-type]


def _names(headers: Sequence[InstanceHeader]) -> str:
    shown = ", ".join(f"{h.name} ({h.error})" if h.error else h.name for h in headers[:_LISTED])
    more = len(headers) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _one_study(
    headers: list[InstanceHeader], study_instance_uid: str | None, warnings: list[str]
) -> tuple[str, list[InstanceHeader]]:
    """The StudyInstanceUID to load and its instances; refuses a mixture of studies."""
    counts = study_uids(headers)
    if study_instance_uid is not None:
        if study_instance_uid not in counts:
            raise NotEligibleError(
                f"study {study_ref(study_instance_uid)} is not among the {len(headers)} instances "
                f"(they belong to {len(counts)} other study/studies)"
            )
        chosen = study_instance_uid
    elif not counts:
        raise CorruptStudyError(
            f"StudyInstanceUID is missing in all {len(headers)} DICOM instances, e.g. {_names(headers)}"
        )
    elif len(counts) > 1:
        listed = ", ".join(f"{study_ref(uid)} ({n} instances)" for uid, n in counts.items())
        raise NotEligibleError(
            f"the source holds {len(counts)} studies ({listed}); give one study per folder, "
            "or choose one by its StudyInstanceUID"
        )
    else:
        chosen = next(iter(counts))
    lacking = [h for h in headers if not h.study_instance_uid]
    if lacking:
        warnings.append(
            f"{len(lacking)} instance(s) without a StudyInstanceUID were left out: {_names(lacking)}"
        )
    return chosen, [h for h in headers if h.study_instance_uid == chosen]


def _assemble_first_fit(
    series: list[Series],
    decisions: list[SeriesDecision],
    settings: SelectionSettings,
    study_uid: str,
    warnings: list[str],
) -> Volume:
    """Assemble the best-ranked series; if its pixels fail to decode, fall back to the next.

    A series that fails here has its decision rewritten (not eligible, with the error).
    """
    by_uid = {s.series_instance_uid: s for s in series}
    ranked = sorted((d for d in decisions if d.eligible), key=lambda d: d.rank or 0)
    first_error: StudyError | None = None
    for decision in ranked:
        candidate = by_uid[decision.series_instance_uid]
        _, plan = evaluate_series(candidate, settings)
        if plan is None:  # cannot happen for an eligible series; guard rather than assert
            raise CorruptStudyError(f"{candidate.label}: its slices no longer form a stack")
        try:
            volume, handled = assemble_volume(
                candidate, plan, study_uid, threads=settings.decode_threads
            )
        except StudyError as error:
            first_error = first_error or error
            index = decisions.index(decision)
            decisions[index] = replace(
                decision, eligible=False, reasons=(error.message,), error_code=error.code, rank=None
            )
            warnings.append(
                f"{candidate.label} could not be loaded ({error.message}); trying the next series"
            )
            continue
        warnings.extend(handled)
        return volume
    if first_error is None:
        raise NotEligibleError("no eligible series")
    raise first_error


def load_study(
    source: Source,
    settings: SelectionSettings | None = None,
    *,
    study_instance_uid: str | None = None,
) -> LoadedStudy:
    """Load the series of one study fit for screening as an int16 HU volume.

    ``source`` is a study folder (or a single file), a sequence of pydicom datasets, or a
    sequence of headers from :func:`scan_folder`. A source holding several studies is
    refused unless ``study_instance_uid`` picks one. Raises :class:`NotEligibleError`,
    :class:`CorruptStudyError` or :class:`UnsupportedStudyError`, never anything else for
    bad input.
    """
    settings = settings or SelectionSettings()
    warnings: list[str] = []
    headers = _headers_of(source)
    if not headers:
        raise NotEligibleError(
            "no DICOM instances found (files without the DICOM marker and DICOMDIRs are skipped)"
        )
    broken = [h for h in headers if h.error is not None]
    usable = [h for h in headers if h.error is None]
    if not usable:
        raise CorruptStudyError(
            f"none of the {len(headers)} DICOM files can be read: {_names(broken)}"
        )
    if broken:
        warnings.append(
            f"{len(broken)} DICOM file(s) could not be read and were left out: {_names(broken)}"
        )
    study_uid, instances = _one_study(usable, study_instance_uid, warnings)
    unassigned = [h for h in instances if not h.series_instance_uid]
    if unassigned:
        warnings.append(
            f"{len(unassigned)} instance(s) without a SeriesInstanceUID were left out: {_names(unassigned)}"
        )
    series = group_series(instances)
    _, decisions = select_series(series, settings)
    volume = _assemble_first_fit(series, decisions, settings, study_uid, warnings)
    log.info(
        "loaded %s: %d slices of %dx%d from %d series considered",
        study_ref(study_uid),
        volume.hu.shape[0],
        volume.hu.shape[1],
        volume.hu.shape[2],
        len(decisions),
    )
    return LoadedStudy(volume=volume, decisions=decisions, warnings=warnings)
