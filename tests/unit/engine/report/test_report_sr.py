"""The DICOM SR of a screened study, read back with pydicom and highdicom."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage

from engine.report.codes import VCF_SCHEME, vertebra_code
from engine.report.sr import (
    SourceSeries,
    SourceSeriesError,
    build_sr,
    level_in_doubt,
    tracking_uid,
    write_sr,
)
from engine.results import LevelNaming, ScreeningResult

MEASUREMENT_GROUP = ("125007", "DCM")
IMAGING_MEASUREMENTS = ("126010", "DCM")
TRACKING_IDENTIFIER = ("112039", "DCM")
FINDING_SITE = ("363698007", "SCT")


def concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodeValue), str(code.CodingSchemeDesignator)


def children(item: Dataset, name: tuple[str, str] | None = None) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if name is None or concept(c) == name]


def walk(item: Dataset):
    yield item
    for child in item.get("ContentSequence", []):
        yield from walk(child)


@pytest.fixture(scope="module")
def written(screened, tmp_path_factory):
    source = SourceSeries.from_folder(screened.folder, screened.output.result.series_instance_uid)
    path = write_sr(screened.output.result, source, tmp_path_factory.mktemp("sr"))
    return path, pydicom.dcmread(path), source


def test_sr_belongs_to_the_study_and_carries_no_pixels(screened, written):
    path, ds, _ = written
    result = screened.output.result
    source_header = pydicom.dcmread(next(screened.folder.iterdir()), stop_before_pixels=True)
    assert path.name == f"{result.study_instance_uid}.dcm"
    assert ds.SOPClassUID == Comprehensive3DSRStorage and ds.Modality == "SR"
    assert ds.StudyInstanceUID == result.study_instance_uid == source_header.StudyInstanceUID
    assert ds.SeriesInstanceUID != result.series_instance_uid
    assert ds.SOPInstanceUID != source_header.SOPInstanceUID
    assert str(ds.PatientName) == "PHANTOM^0001" and ds.PatientID == "PHANTOM0001"
    assert ds.AccessionNumber == "ACC0001" and ds.StudyDate == "20240102"
    assert "PixelData" not in ds
    assert ds.ContentQualification == "RESEARCH"
    assert list(ds.SoftwareVersions) == ["vcfscreen 0.1.0", "vertebra_seg stand-in", "vertebra_cls stand-in"]
    assert any(item.CodingSchemeDesignator == VCF_SCHEME for item in ds.CodingSchemeIdentificationSequence)


def test_evidence_references_every_instance_of_the_source_series(screened, written):
    _, ds, _ = written
    (study_item,) = ds.CurrentRequestedProcedureEvidenceSequence
    (series_item,) = study_item.ReferencedSeriesSequence
    assert series_item.SeriesInstanceUID == screened.output.result.series_instance_uid
    referenced = {item.ReferencedSOPInstanceUID for item in series_item.ReferencedSOPSequence}
    on_disk = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in screened.folder.iterdir()}
    assert referenced == on_disk


def test_one_measurement_group_per_vertebra_with_level_grade_and_centroid(screened, written):
    _, ds, source = written
    result = screened.output.result
    (measurements,) = [c for c in ds.ContentSequence if concept(c) == IMAGING_MEASUREMENTS]
    groups = children(measurements, MEASUREMENT_GROUP)
    assert len(groups) == len(result.vertebrae)
    for group, finding in zip(groups, result.vertebrae):
        (tracking,) = children(group, TRACKING_IDENTIFIER)
        assert tracking.TextValue == finding.level
        (site,) = children(group, FINDING_SITE)
        expected_site = vertebra_code(finding.level)
        assert site.ConceptCodeSequence[0].CodeValue == expected_site.value
        codes = {concept(item)[0]: item for item in walk(group) if item.ValueType in ("CODE", "NUM")}
        assert codes["GENANT"].ConceptCodeSequence[0].CodeValue == f"GENANT{finding.genant_grade}"
        loss = float(codes["HLOSS"].MeasuredValueSequence[0].NumericValue)
        assert loss == pytest.approx(finding.height_loss * 100.0, abs=0.01)
        assert codes["HLOSS"].MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "%"
        probability = float(codes["PFX"].MeasuredValueSequence[0].NumericValue)
        assert probability == pytest.approx(finding.fracture_probability, abs=1e-4)
        if finding.heights_mm is not None:
            anterior = float(codes["HANT"].MeasuredValueSequence[0].NumericValue)
            assert anterior == pytest.approx(finding.heights_mm.anterior, abs=0.01)
        (point,) = [item for item in walk(group) if item.ValueType == "SCOORD3D"]
        assert point.GraphicType == "POINT"
        assert point.ReferencedFrameOfReferenceUID == source.frame_of_reference_uid
        np.testing.assert_allclose(point.GraphicData, finding.centroid_lps_mm, atol=0.01)
    l1 = next(g for g, f in zip(groups, result.vertebrae) if f.level == "L1")
    (site,) = children(l1, FINDING_SITE)
    assert (site.ConceptCodeSequence[0].CodeValue, site.ConceptCodeSequence[0].CodingSchemeDesignator) == (
        "66794005", "SCT")
    l1_codes = {concept(item)[0]: item for item in walk(l1) if item.ValueType == "CODE"}
    assert l1_codes["GENANT"].ConceptCodeSequence[0].CodeValue == "GENANT3"
    assert l1_codes["MORPH"].ConceptCodeSequence[0].CodeValue == "WEDGE"


def test_observer_is_the_vcfscreen_device_and_highdicom_reads_the_report(screened, written):
    _, ds, _ = written
    texts = {concept(item): item.get("TextValue") for item in walk(ds) if item.get("ValueType") == "TEXT"}
    assert texts[("121013", "DCM")] == "vcfscreen"  # Device Observer Name
    assert "vcfscreen" in texts[("121015", "DCM")]  # Device Observer Model Name
    report = hd.sr.Comprehensive3DSR.from_dataset(ds)
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [v.level for v in screened.output.result.vertebrae]
    assert groups[0].tracking_uid == tracking_uid(ds.StudyInstanceUID, groups[0].tracking_identifier)


def test_source_from_datasets_keeps_headers_only(screened):
    datasets = [pydicom.dcmread(p) for p in sorted(screened.folder.iterdir())[:5]]
    other = Dataset()
    other.SeriesInstanceUID = "1.2.3.999"
    source = SourceSeries.from_datasets([*datasets, other], datasets[0].SeriesInstanceUID)
    assert len(source.instances) == 5 and "PixelData" not in source.header
    assert "PixelData" in datasets[0]  # the caller's datasets are untouched
    with pytest.raises(SourceSeriesError):
        SourceSeries.from_datasets(datasets, "1.2.3.4.5.6")


def test_without_frame_of_reference_the_groups_have_no_coordinates(screened):
    result = screened.output.result
    source = SourceSeries.from_folder(screened.folder, result.series_instance_uid)
    header = Dataset()
    header.update(source.header)
    del header.FrameOfReferenceUID
    del header.PatientSex, header.StudyDate  # absent type-2 attributes are written empty
    sr = build_sr(result, SourceSeries(header=header, instances=source.instances))
    assert not [item for item in walk(sr) if item.get("ValueType") == "SCOORD3D"]
    groups = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_image_measurement_groups()
    assert len(groups) == len(result.vertebrae)
    assert sr.PatientSex == "" and sr.StudyDate in ("", None)


def test_names_in_doubt_are_marked_in_their_groups(screened):
    result = screened.output.result
    source = SourceSeries.from_folder(screened.folder, result.series_instance_uid)
    unseen = LevelNaming(anchor="ribs+sacrum", doubt="rib count",
                         notes=("the number of rib-bearing vertebrae is not seen: ...",))
    close = LevelNaming(anchor="ribs+sacrum", doubt="close call", notes=("level naming uncertain: ...",))
    regions = [v.level[0] for v in result.vertebrae]
    assert regions.count("T") >= 3 and regions.count("L") >= 1  # both kinds of name in view

    def doubted(naming: LevelNaming | None) -> dict[str, bool]:
        sr = build_sr(result.model_copy(update={"level_naming": naming}), source)
        (measurements,) = [c for c in sr.ContentSequence if concept(c) == IMAGING_MEASUREMENTS]
        marked = {}
        for group in children(measurements, MEASUREMENT_GROUP):
            (tracking,) = children(group, TRACKING_IDENTIFIER)
            marked[tracking.TextValue] = any(
                item.ValueType == "CODE" and concept(item) == ("LEVELID", VCF_SCHEME)
                and item.ConceptCodeSequence[0].CodeValue == "LEVELDOUBT" for item in walk(group))
        return marked

    # the rib count moves the thoracic (and cervical) names; the lumbar ones are counted from the sacrum
    assert doubted(unseen) == {level: level[0] in "CT" for level in doubted(None)}
    assert doubted(close) == {level: level != "S1" for level in doubted(None)}
    assert not any(doubted(None).values()) and not any(doubted(LevelNaming(anchor="ribs+sacrum")).values())
    assert level_in_doubt(result.model_copy(update={"level_naming": unseen}), "T12")
    # a result from before the kind was recorded says only in_doubt: read as the wider doubt
    older = LevelNaming.model_validate({"anchor": "ribs+sacrum", "in_doubt": True})
    assert doubted(older) == doubted(close)


def test_refuses_failed_results_and_mismatched_sources(screened):
    result = screened.output.result
    source = SourceSeries.from_folder(screened.folder, result.series_instance_uid)
    with pytest.raises(ValueError, match="ok results only"):
        build_sr(ScreeningResult.error(result.study_instance_uid, ValueError("x")), source)
    other = result.model_copy(update={"study_instance_uid": "1.2.3.4"})
    with pytest.raises(SourceSeriesError, match="another study"):
        build_sr(other, source)
    with pytest.raises(SourceSeriesError, match="no longer"):
        SourceSeries.from_folder(screened.folder, "1.2.3.4.5.6.7")


def test_vertebra_codes():
    assert (vertebra_code("L1").value, vertebra_code("L1").scheme_designator) == ("66794005", "SCT")
    assert vertebra_code("T12").value == "23215003"
    for level in ("T13", "L6", "S1"):
        assert vertebra_code(level).scheme_designator == VCF_SCHEME
    with pytest.raises(ValueError, match="X9"):
        vertebra_code("X9")
