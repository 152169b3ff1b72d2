"""Series grouping and selection: the right series among decoys, and readable refusals."""

from __future__ import annotations

import re

import pytest
from dicom_series_factory import make_series, write_series
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from engine.dicom import (
    group_series,
    kernel_class,
    load_study,
    scan_folder,
    select_series,
)
from engine.dicom.headers import headers_from_datasets
from engine.errors import CorruptStudyError, NotEligibleError

STUDY = "1.2.826.0.1.3680043.8.498.77"
_UID = re.compile(r"\d+\.\d+\.\d+\.\d+\.\d+")


def _decoys() -> dict[str, list]:
    """A localizer, a thick 5 mm series, a sagittal DERIVED reformat and the good one."""
    return {
        "localizer": make_series(
            n_slices=2,
            series_number=1,
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            orientation=(1, 0, 0, 0, 0, -1),
            origin=(-25.0, 0.0, 25.0),
            step=(0.0, 2.0, 0.0),
            study_uid=STUDY,
        ),
        "thick": make_series(
            n_slices=20, slice_spacing=5.0, thickness=5.0, series_number=3, study_uid=STUDY
        ),
        "sagittal": make_series(
            n_slices=30,
            series_number=4,
            image_type=("DERIVED", "SECONDARY", "REFORMATTED"),
            orientation=(0, 1, 0, 0, 0, -1),
            origin=(-10.0, -25.0, 25.0),
            slice_spacing=1.0,
            study_uid=STUDY,
        ),
        "good": make_series(series_number=2, study_uid=STUDY),
    }


def _reasons(decisions, number: int) -> str:
    return " ".join(next(d for d in decisions if d.series_number == number).reasons)


def test_picks_the_good_series_among_decoys(tmp_path, settings) -> None:
    series = _decoys()
    write_series([ds for group in series.values() for ds in group], tmp_path)
    study = load_study(tmp_path, settings)
    assert study.series_instance_uid == series["good"][0].SeriesInstanceUID
    assert study.study_instance_uid == STUDY
    decisions = study.decisions
    assert [d.series_number for d in decisions] == [1, 2, 3, 4]
    assert [d.eligible for d in decisions] == [False, True, False, False]
    assert "localizer" in _reasons(decisions, 1)
    assert "5 mm thick; at most 3 mm" in _reasons(decisions, 3)
    assert "sagittal slices" in _reasons(decisions, 4)
    assert "not an original reconstruction (ImageType DERIVED" in _reasons(decisions, 4)
    good = next(d for d in decisions if d.eligible)
    assert (good.n_instances, good.thickness, good.n_slices, good.rank) == (40, 2.5, 40, 0)
    assert good.coverage_mm == pytest.approx(97.5)


def test_nothing_eligible_lists_every_series_without_identifiers(settings) -> None:
    series = _decoys()
    del series["good"]
    datasets = [ds for group in series.values() for ds in group]
    with pytest.raises(NotEligibleError) as caught:
        load_study(datasets, settings)
    message = str(caught.value)
    assert message.startswith("not_eligible: no series is fit for screening (3 series)")
    for number in (1, 3, 4):
        assert f"series #{number} [" in message
    assert not _UID.search(message), "a UID leaked into the message"
    assert "SYNTHETIC" not in message and "PHANTOM" not in message


def test_select_series_returns_decisions_in_series_order(settings) -> None:
    series = group_series(headers_from_datasets([ds for g in _decoys().values() for ds in g]))
    chosen, decisions = select_series(series, settings)
    assert chosen.series_number == 2
    assert len(decisions) == 4 and decisions[1].rank == 0
    with pytest.raises(NotEligibleError, match="holds no DICOM image series"):
        select_series([], settings)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # standard kernel beats a thinner bone kernel
        ({"kernel": "B70f", "thickness": 1.0}, {"kernel": "B30f", "thickness": 2.0}, 2),
        # same kernel class: thinner wins
        ({"kernel": "STANDARD", "thickness": 2.0}, {"kernel": "SOFT", "thickness": 1.0}, 2),
        # a thin series with much less coverage loses to full coverage
        (
            {"kernel": "B30f", "thickness": 2.0},
            {"kernel": "B30f", "thickness": 1.0, "n_slices": 25},
            1,
        ),
    ],
)
def test_preference_rule(first: dict, second: dict, expected: int, settings) -> None:
    a = make_series(series_number=1, study_uid=STUDY, **first)
    b = make_series(series_number=2, study_uid=STUDY, **second)
    study = load_study([*a, *b], settings)
    assert study.volume.meta["series_number"] == expected


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("B30f", "standard"),
        ("Br40d", "standard"),
        ("I70f", "sharp"),
        ("B60f", "sharp"),
        ("STANDARD", "standard"),
        ("BONEPLUS", "sharp"),
        ("LUNG", "sharp"),
        ("SOFT", "standard"),
        ("FC03", "standard"),
        ("FC52", "sharp"),
        ("B", "standard"),
        ("YC", "sharp"),
        ("L", "sharp"),
        ("XYZ", "unknown"),
        (None, "unknown"),
    ],
)
def test_kernel_classes(kernel, expected: str) -> None:
    assert kernel_class(kernel) == expected


def test_thresholds_come_from_settings(settings) -> None:
    datasets = make_series(thickness=2.5)
    strict = settings.model_copy(update={"max_slice_thickness_mm": 2.0})
    with pytest.raises(NotEligibleError, match="2.5 mm thick; at most 2 mm"):
        load_study(datasets, strict)
    with pytest.raises(NotEligibleError, match="only 40 slices; at least 50 are needed"):
        load_study(datasets, settings.model_copy(update={"min_slices": 50}))
    with pytest.raises(
        NotEligibleError, match="covers 98 mm head-to-foot; at least 150 mm is needed"
    ):
        load_study(datasets, settings.model_copy(update={"min_coverage_mm": 150.0}))
    derived = make_series(image_type=("DERIVED", "PRIMARY", "AXIAL"))
    assert (
        load_study(derived, settings.model_copy(update={"require_original": False})).volume.shape[0]
        == 40
    )


def test_other_modality_and_oblique(settings) -> None:
    with pytest.raises(NotEligibleError, match="modality is MR; only CT is screened"):
        load_study(make_series(modality="MR"), settings)
    c, s = 0.9063077870366499, 0.42261826174069944  # 25 degrees about x
    oblique = make_series(orientation=(1.0, 0.0, 0.0, 0.0, c, s), origin=(-25.0, -25.0, -20.0))
    with pytest.raises(
        NotEligibleError, match=r"oblique slices \(normal 25 degrees from the head-foot axis\)"
    ):
        load_study(oblique, settings)


def test_two_studies_in_one_folder(tmp_path, settings) -> None:
    one = make_series(study_uid=STUDY)
    other = make_series(study_uid=STUDY + ".2")
    write_series([*one, *other], tmp_path)
    with pytest.raises(NotEligibleError, match="the source holds 2 studies") as caught:
        load_study(tmp_path, settings)
    assert not _UID.search(str(caught.value))
    study = load_study(tmp_path, settings, study_instance_uid=STUDY + ".2")
    assert study.study_instance_uid == STUDY + ".2"
    assert study.series_instance_uid == other[0].SeriesInstanceUID
    with pytest.raises(NotEligibleError, match="is not among"):
        load_study(tmp_path, settings, study_instance_uid="1.2.3")


def test_scan_skips_non_dicom_and_dicomdir_and_reads_headers_only(tmp_path) -> None:
    datasets = make_series(n_slices=3)
    paths = write_series(datasets, tmp_path, nested=False)
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    # Pixel bytes cut short: a header scan must not notice (it never reads pixels).
    paths[0].write_bytes(paths[0].read_bytes()[:-500])
    headers = scan_folder(tmp_path)
    assert sorted(h.name for h in headers) == sorted(p.name for p in paths)
    assert all(h.error is None and h.rows == 64 and len(h.frames) == 1 for h in headers)
    assert {h.series_instance_uid for h in headers} == {datasets[0].SeriesInstanceUID}


def test_unreadable_file_is_left_out_with_a_warning(tmp_path, settings) -> None:
    write_series(make_series(), tmp_path, nested=False)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00ZZ\x04\x00abcd")  # an unknown VR
    study = load_study(tmp_path, settings)
    assert any(
        "1 DICOM file(s) could not be read" in w
        and "broken.dcm (NotImplementedError: Unknown Value Representation" in w
        for w in study.warnings
    )
    assert not any(str(tmp_path) in w for w in study.warnings)


def test_empty_or_missing_folder(tmp_path, settings) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(NotEligibleError, match="no DICOM instances found"):
        load_study(tmp_path, settings)
    with pytest.raises(NotEligibleError, match="does not exist"):
        load_study(tmp_path / "absent", settings)


def test_missing_study_uid_is_corrupt(settings) -> None:
    datasets = make_series(n_slices=3)
    for ds in datasets:
        del ds.StudyInstanceUID
    with pytest.raises(CorruptStudyError, match="StudyInstanceUID is missing in all 3"):
        load_study(datasets, settings)


def test_broken_best_series_falls_back_to_the_next(settings) -> None:
    best = make_series(series_number=1, thickness=1.0, study_uid=STUDY)
    second = make_series(series_number=2, thickness=2.0, study_uid=STUDY)
    best[10].PixelData = best[10].PixelData[:100]
    study = load_study([*best, *second], settings)
    assert study.volume.meta["series_number"] == 2
    failed = next(d for d in study.decisions if d.series_number == 1)
    assert not failed.eligible and failed.error_code == "corrupt"
    assert any("series #1" in w and "trying the next series" in w for w in study.warnings)


def test_malformed_optional_value_is_only_a_warning(settings) -> None:
    datasets = make_series()
    # As read from a file: the bytes stay raw until touched (pydicom refuses to set it).
    tag = Tag("KVP")
    datasets[2]._dict[tag] = RawDataElement(tag, "DS", 4, b"high", 0, False, True)
    study = load_study(datasets, settings)
    assert study.volume.shape[0] == 40
    assert any("dataset #2: KVP is not a number ('high')" in w for w in study.warnings)


def test_a_broken_screening_series_makes_the_study_corrupt(settings) -> None:
    """Decoys are not eligible, the would-be series misses a slice: the study is corrupt."""
    series = _decoys()
    del series["good"][20]
    datasets = [ds for group in series.values() for ds in group]
    with pytest.raises(CorruptStudyError) as caught:
        load_study(datasets, settings)
    message = caught.value.message
    assert "(4 series)" in message and "localizer" in message
    assert "series #2 [" in message and "image(s) missing" in message
