"""A ScreeningResult as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

The SR belongs to the screened study (same StudyInstanceUID, patient and study attributes
copied from the source series' header; a new series and instance), lists every instance of
the screened series as evidence, and holds one measurement group per vertebra:

- tracking identifier: the level (``"L1"``) and a UID stable for a study and level, so a
  later SR of the same study tracks the same vertebra;
- finding site: the vertebra (SNOMED CT, or ``99VCF`` for T13, L6 and S1, see
  :mod:`engine.report.codes`);
- measurements: height loss (%), anterior / middle / posterior / expected heights (mm) when
  the body was measured, fracture probability ({ratio});
- qualitative evaluations: the Genant grade (``99VCF`` GENANT0..3), for a deformity its
  morphology, and where the result says the level names are in doubt, for each name that
  doubt moves, level identification: may be one off (``99VCF`` LEVELID = LEVELDOUBT);
- the centroid as a SCOORD3D POINT in the source series' frame of reference (a TID 1411
  volumetric group whose volume surface is that point, with the source series named);
  without a FrameOfReferenceUID the group is a TID 1501 group without coordinates.

The observer is the device vcfscreen (its version in the model name) and the algorithm
identification carries the full pipeline version (code and model versions). The content
qualification is RESEARCH: these are findings of a research prototype, not a diagnosis.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceSeriesForSegmentation,
    TrackingIdentifier,
    VolumeSurface,
    VolumetricROIMeasurementsAndQualitativeEvaluations,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from engine import __version__
from engine.dicom import scan_folder
from engine.report.codes import (
    ANTERIOR_HEIGHT,
    COMPUTED_TOMOGRAPHY,
    EXPECTED_HEIGHT,
    FRACTURE_PROBABILITY,
    GENANT_GRADE,
    GENANT_GRADES,
    HEIGHT_LOSS,
    LEVEL_IDENTIFICATION,
    LEVEL_MAY_BE_ONE_OFF,
    MIDDLE_HEIGHT,
    MILLIMETRE,
    MORPHOLOGIES,
    MORPHOLOGY,
    PERCENT,
    POSTERIOR_HEIGHT,
    RATIO,
    coding_scheme_item,
    vertebra_code,
)
from engine.results import ScreeningResult, VertebraFinding

SR_SERIES_NUMBER = 9701
"""Series number of vcfscreen's SR series (high, so it sorts after the acquired series)."""
SR_SERIES_DESCRIPTION = "vcfscreen VCF screening (research, not for diagnosis)"
DEVICE_NAME = "vcfscreen"
MANUFACTURER = "vcfscreen open-source project"
_PIXEL_DATA = Tag("PixelData")
_TYPE2_DEFAULTS = {
    "PatientID": "",
    "PatientName": "",
    "PatientBirthDate": "",
    "PatientSex": "",
    "AccessionNumber": "",
    "StudyID": "",
    "StudyDate": "",
    "StudyTime": "",
    "ReferringPhysicianName": "",
}
_PATIENT_SEX = {"M", "F", "O"}


class SourceSeriesError(ValueError):
    """The screened series cannot be found again in its source, or lacks what an SR needs."""


@dataclass(frozen=True)
class SourceSeries:
    """What an SR needs of the screened series: one header and every instance's identity."""

    header: Dataset
    """Header of one instance (no pixel data): patient, study and frame of reference."""
    instances: tuple[tuple[str, str], ...]
    """(SOPClassUID, SOPInstanceUID) of every instance of the series."""

    @property
    def study_instance_uid(self) -> str:
        return str(self.header.StudyInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.header.SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str | None:
        value = self.header.get("FrameOfReferenceUID")
        return str(value) if value else None

    @classmethod
    def from_folder(cls, folder: Path | str, series_instance_uid: str) -> SourceSeries:
        """Scan a study folder's headers again and keep the screened series."""
        headers = [
            h for h in scan_folder(folder)
            if h.error is None and h.series_instance_uid == series_instance_uid
        ]
        if not headers:
            raise SourceSeriesError(
                f"the screened series is no longer in the study folder {Path(folder).name!r}"
            )
        first = pydicom.dcmread(headers[0].source, stop_before_pixels=True)
        instances = tuple((str(h.sop_class_uid), str(h.sop_instance_uid)) for h in headers)
        return cls(header=_header_only(first), instances=instances)

    @classmethod
    def from_datasets(cls, datasets: Sequence[Dataset], series_instance_uid: str) -> SourceSeries:
        """The screened series among in-memory instances (fetched over DICOMweb)."""
        chosen = [ds for ds in datasets if ds.get("SeriesInstanceUID") == series_instance_uid]
        if not chosen:
            raise SourceSeriesError(
                f"none of the {len(datasets)} instances belongs to the screened series"
            )
        instances = tuple((str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in chosen)
        return cls(header=_header_only(chosen[0]), instances=instances)


def _header_only(ds: Dataset) -> Dataset:
    """A copy of the data elements before the pixel data (nothing of the pixels is kept)."""
    header = Dataset()
    for element in ds:
        if element.tag >= _PIXEL_DATA:
            break
        header.add(element)
    return header


def _evidence(source: SourceSeries) -> list[Dataset]:
    """One small dataset per source instance; the first carries patient and study."""
    first = Dataset()
    first.update(source.header)
    for keyword, default in _TYPE2_DEFAULTS.items():
        if keyword not in first or first.data_element(keyword).value is None:
            setattr(first, keyword, default)
    if str(first.PatientSex).strip().upper() not in _PATIENT_SEX:
        first.PatientSex = ""
    evidence = []
    for index, (sop_class, sop_instance) in enumerate(source.instances):
        item = first if index == 0 else Dataset()
        item.StudyInstanceUID = source.study_instance_uid
        item.SeriesInstanceUID = source.series_instance_uid
        item.SOPClassUID = sop_class
        item.SOPInstanceUID = sop_instance
        evidence.append(item)
    return evidence


def tracking_uid(study_instance_uid: str, level: str) -> str:
    """A UID that names one vertebra of one study, the same in every SR of that study."""
    return generate_uid(entropy_srcs=["vcfscreen-vertebra", study_instance_uid, level])


def _measurements(finding: VertebraFinding) -> list[Measurement]:
    values = [(HEIGHT_LOSS, finding.height_loss * 100.0, PERCENT)]
    heights = finding.heights_mm
    if heights is not None:
        values += [
            (ANTERIOR_HEIGHT, heights.anterior, MILLIMETRE),
            (MIDDLE_HEIGHT, heights.middle, MILLIMETRE),
            (POSTERIOR_HEIGHT, heights.posterior, MILLIMETRE),
        ]
        if heights.expected is not None:
            values.append((EXPECTED_HEIGHT, heights.expected, MILLIMETRE))
    values.append((FRACTURE_PROBABILITY, finding.fracture_probability, RATIO))
    return [Measurement(name=name, value=round(float(value), 4), unit=unit)
            for name, value, unit in values]


def level_in_doubt(result: ScreeningResult, level: str) -> bool:
    """Whether the result says ``level``'s name may be one off: under a close call between two
    namings every name but S1; under a rib count only the prior chose, the cervical and
    thoracic names (counted up from the sacrum, the lumbar names stand whatever the count)."""
    naming = result.level_naming
    if naming is None or not naming.in_doubt or level == "S1":
        return False
    return naming.doubt == "close call" or level[0] in "CT"


def _evaluations(finding: VertebraFinding, level_doubted: bool = False) -> list[QualitativeEvaluation]:
    evaluations = [QualitativeEvaluation(GENANT_GRADE, GENANT_GRADES[finding.genant_grade])]
    if finding.morphology in MORPHOLOGIES:
        evaluations.append(QualitativeEvaluation(MORPHOLOGY, MORPHOLOGIES[finding.morphology]))
    if level_doubted:
        evaluations.append(QualitativeEvaluation(LEVEL_IDENTIFICATION, LEVEL_MAY_BE_ONE_OFF))
    return evaluations


def measurement_group(
    finding: VertebraFinding,
    study_instance_uid: str,
    source: SourceSeries,
    algorithm: AlgorithmIdentification,
    level_doubted: bool = False,
) -> VolumetricROIMeasurementsAndQualitativeEvaluations | MeasurementsAndQualitativeEvaluations:
    """The measurement group of one vertebra (see the module docstring)."""
    common = {
        "tracking_identifier": TrackingIdentifier(
            uid=tracking_uid(study_instance_uid, finding.level), identifier=finding.level
        ),
        "finding_sites": [FindingSite(vertebra_code(finding.level))],
        "algorithm_id": algorithm,
        "measurements": _measurements(finding),
        "qualitative_evaluations": _evaluations(finding, level_doubted),
    }
    frame_of_reference = source.frame_of_reference_uid
    if frame_of_reference is None:
        return MeasurementsAndQualitativeEvaluations(**common)
    centroid = VolumeSurface(
        graphic_type=hd.sr.GraphicTypeValues3D.POINT,
        graphic_data=np.array([finding.centroid_lps_mm], dtype=float),
        frame_of_reference_uid=frame_of_reference,
        source_series=SourceSeriesForSegmentation(source.series_instance_uid),
    )
    return VolumetricROIMeasurementsAndQualitativeEvaluations(
        referenced_volume_surface=centroid, **common
    )


def build_sr(
    result: ScreeningResult,
    source: SourceSeries,
    *,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Comprehensive3DSR:
    """The SR of an ``ok`` result whose vertebrae come from ``source``'s series."""
    if result.status != "ok":
        raise ValueError(f"an SR is written for ok results only; this one is {result.status!r}")
    if not result.vertebrae:
        raise ValueError("the result has no vertebra to report (TID 1500 needs one group at least)")
    if source.study_instance_uid != result.study_instance_uid:
        raise SourceSeriesError("the source series belongs to another study than the result")
    if result.series_instance_uid and source.series_instance_uid != result.series_instance_uid:
        raise SourceSeriesError("the source series is not the series the result screened")
    device = ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["vcfscreen-device", __version__]),
            name=DEVICE_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=f"vcfscreen {__version__}",
        ),
    )
    algorithm = AlgorithmIdentification(name=DEVICE_NAME, version=result.pipeline_version)
    groups = [
        measurement_group(finding, result.study_instance_uid, source, algorithm,
                          level_in_doubt(result, finding.level))
        for finding in result.vertebrae
    ]
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=COMPUTED_TOMOGRAPHY,
        imaging_measurements=groups,
    )
    return Comprehensive3DSR(
        evidence=_evidence(source),
        content=report[0],
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
        manufacturer_model_name=f"vcfscreen {__version__}",
        software_versions=[part.strip()[:64] for part in result.pipeline_version.split(";")],
        content_qualification=hd.ContentQualificationValues.RESEARCH,
        coding_schemes=[coding_scheme_item()],
    )


def write_sr(result: ScreeningResult, source: SourceSeries, folder: Path) -> Path:
    """Write ``folder/<StudyInstanceUID>.dcm``; a partial file never takes the final name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.study_instance_uid}.dcm"
    partial = path.with_name(path.name + ".part")
    build_sr(result, source).save_as(partial, enforce_file_format=True)
    os.replace(partial, path)
    return path
