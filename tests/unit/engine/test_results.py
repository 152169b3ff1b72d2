from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from engine import __version__
from engine.errors import CorruptStudyError, NotEligibleError, TransientError
from engine.results import (
    LEVELS,
    SCHEMA_VERSION,
    HeightsMm,
    LevelNaming,
    ScreeningResult,
    VertebraFinding,
    level_index,
    pipeline_version,
)
from engine.settings import GradingSettings

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.2"
CONTRACT_KEYS = [
    "schema_version", "study_instance_uid", "series_instance_uid", "status", "reason",
    "pipeline_version", "flag", "max_genant_grade",
]
VERTEBRA_KEYS = {"level", "centroid_lps_mm", "fracture_probability", "genant_grade", "height_loss"}


def finding(level: str, grade: int = 0, **overrides) -> VertebraFinding:
    values = {
        "level": level,
        "centroid_lps_mm": (1.5, -30.25, 400.0 - 30 * (LEVELS.index(level) if level in LEVELS else 0)),
        "fracture_probability": 0.9 if grade else 0.05,
        "genant_grade": grade,
        "height_loss": 0.1 + 0.1 * grade,
    }
    values.update(overrides)
    return VertebraFinding(**values)


def ok_result(grades: dict[str, int], grading: GradingSettings | None = None, **kwargs) -> ScreeningResult:
    return ScreeningResult.from_findings(
        STUDY, SERIES, [finding(level, grade) for level, grade in grades.items()],
        pipeline_version=pipeline_version({"vertebra_seg": 1, "vertebra_cls": 1}),
        grading=grading or GradingSettings(), **kwargs,
    )


def test_levels_run_cranial_to_caudal_with_the_variants():
    assert len(LEVELS) == 7 + 13 + 6 + 1
    assert LEVELS[0] == "C1" and LEVELS[-1] == "S1"
    assert level_index("C7") < level_index("T1") < level_index("T12") < level_index("T13") < level_index("L1")
    assert level_index("L5") < level_index("L6") < level_index("S1")
    with pytest.raises(ValueError, match="'L7'"):
        level_index("L7")


def test_pipeline_version_names_code_and_models():
    assert pipeline_version({"vertebra_seg": 1, "vertebra_cls": "2"}) == (
        f"vcfscreen {__version__}; vertebra_seg 1; vertebra_cls 2"
    )


def test_json_round_trip_keeps_every_field():
    result = ok_result(
        {"T12": 2, "L1": 0},
        timings_ms={"preprocess": 81.234, "fetch": 12.5},
    )
    line = result.to_json_line()
    assert "\n" not in line
    back = ScreeningResult.from_json(line)
    assert back == result
    payload = json.loads(line)
    assert list(payload)[: len(CONTRACT_KEYS)] == CONTRACT_KEYS
    assert payload["schema_version"] == SCHEMA_VERSION
    assert VERTEBRA_KEYS <= set(payload["vertebrae"][0])
    assert payload["vertebrae"][0]["centroid_lps_mm"] == [1.5, -30.25, 400.0 - 30 * level_index("T12")]
    assert payload["timings_ms"] == {"fetch": 12.5, "preprocess": 81.23}


def test_optional_fields_round_trip():
    rich = finding(
        "L1", 3, morphometric_grade=3, classifier_grade=2, classifier_probability=0.81,
        heights_mm=HeightsMm(anterior=12.0, middle=16.1, posterior=24.3, expected=25.0),
        morphology="wedge", decided_by="agreement", notes=("neighbours on one side only",),
    )
    result = ScreeningResult.from_findings(
        STUDY, SERIES, [rich], pipeline_version="vcfscreen test", grading=GradingSettings()
    )
    back = ScreeningResult.from_json(result.to_json_line())
    assert back.vertebrae[0].heights_mm.expected == 25.0
    assert back.vertebrae[0].notes == ("neighbours on one side only",)
    assert back.level_naming is None


def test_the_level_naming_round_trips_and_only_an_ok_result_carries_it():
    naming = LevelNaming(anchor="ribs+sacrum", notes=("transitional anatomy read: 6 lumbar vertebrae (L6)",))
    result = ScreeningResult.from_findings(
        STUDY, SERIES, [finding("L1", 0)], pipeline_version="vcfscreen test", grading=GradingSettings(),
        level_naming=naming,
    )
    assert ScreeningResult.from_json(result.to_json_line()).level_naming == naming
    with pytest.raises(ValidationError, match="level naming"):
        ScreeningResult(study_instance_uid=STUDY, status="error", reason="corrupt: no pixel data",
                        pipeline_version="vcfscreen test", level_naming=naming)
    with pytest.raises(ValidationError):
        LevelNaming(anchor="")


def test_the_kind_of_naming_doubt_and_the_flag_agree():
    rib_count = LevelNaming(anchor="ribs+sacrum", doubt="rib count")
    assert rib_count.in_doubt and LevelNaming.model_validate_json(rib_count.model_dump_json()) == rib_count
    assert LevelNaming(anchor="ribs+sacrum").doubt is None
    # written before the kind was recorded: in doubt, read as the wider doubt
    assert LevelNaming.model_validate({"anchor": "ribs", "in_doubt": True}).doubt == "close call"
    with pytest.raises(ValidationError, match="given with in_doubt false"):
        LevelNaming(anchor="ribs", doubt="close call", in_doubt=False)
    with pytest.raises(ValidationError):
        LevelNaming(anchor="ribs", doubt="maybe")
    with pytest.raises(ValidationError, match="given with in_doubt false"):
        LevelNaming.model_validate({"anchor": "ribs", "in_doubt": 0, "doubt": "rib count"})
    with pytest.raises(ValidationError, match="needs its kind"):
        LevelNaming.model_validate({"anchor": "ribs", "in_doubt": True, "doubt": None})


def test_same_content_gives_the_same_bytes():
    first = ok_result({"L1": 1, "T12": 0}, timings_ms={"a": 1.0, "b": 2.0})
    second = ok_result({"T12": 0, "L1": 1}, timings_ms={"b": 2.0, "a": 1.0})
    assert first.to_json_line() == second.to_json_line()
    assert [v.level for v in first.vertebrae] == ["T12", "L1"]


@pytest.mark.parametrize(
    "grades, flag_min_grade, flag, highest",
    [
        ({"T12": 2, "L1": 0}, 2, True, 2),
        ({"T12": 1, "L1": 0}, 2, False, 1),
        ({"T12": 2, "L1": 3}, 3, True, 3),
        ({"T12": 2}, 3, False, 2),
        ({}, 2, False, 0),
    ],
)
def test_flag_and_max_grade_follow_the_vertebrae(grades, flag_min_grade, flag, highest):
    result = ok_result(grades, GradingSettings(flag_min_grade=flag_min_grade))
    assert (result.flag, result.max_genant_grade, result.flag_min_grade) == (flag, highest, flag_min_grade)


def test_hand_made_inconsistent_flag_or_grade_is_refused():
    good = ok_result({"T12": 2}).model_dump()
    with pytest.raises(ValidationError, match="flag False is inconsistent"):
        ScreeningResult(**{**good, "flag": False})
    with pytest.raises(ValidationError, match="max_genant_grade 3 differs"):
        ScreeningResult(**{**good, "max_genant_grade": 3})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("centroid_lps_mm", (math.nan, 0.0, 0.0), "finite"),
        ("centroid_lps_mm", (0.0, math.inf, 0.0), "finite"),
        ("centroid_lps_mm", (0.0, 0.0), "centroid_lps_mm.2\\n  Field required"),
        ("fracture_probability", 1.2, "less than or equal to 1"),
        ("fracture_probability", math.nan, "finite"),
        ("height_loss", -0.1, "greater than or equal to 0"),
        ("genant_grade", 4, "less than or equal to 3"),
        ("level", "L7", "unknown vertebral level 'L7'"),
        ("morphology", "burst", "wedge"),
    ],
)
def test_bad_vertebra_values_are_refused(field, value, message):
    values = {"level": "L1", field: value}
    with pytest.raises(ValidationError, match=message):
        finding(values.pop("level"), **values)


def test_repeated_levels_are_refused():
    with pytest.raises(ValidationError, match="repeated: L1"):
        ScreeningResult.from_findings(
            STUDY, SERIES, [finding("L1"), finding("L1")], pipeline_version="v", grading=GradingSettings()
        )


def test_negative_or_nan_timing_is_refused():
    with pytest.raises(ValidationError):
        ok_result({}, timings_ms={"infer": -1.0})
    with pytest.raises(ValidationError):
        ok_result({}, timings_ms={"infer": math.nan})


@pytest.mark.parametrize(
    "status, reason, message",
    [
        ("ok", "corrupt: x", "must not carry a reason"),
        ("error", None, "needs a reason"),
        ("error", "it broke", "needs a reason written '<code>: <message>'"),
        ("not_eligible", "", "needs a reason"),
        ("done", None, "status"),
    ],
)
def test_status_and_reason_must_agree(status, reason, message):
    with pytest.raises(ValidationError, match=message):
        ScreeningResult(study_instance_uid=STUDY, status=status, reason=reason, pipeline_version="v")


def test_failed_study_cannot_carry_findings():
    with pytest.raises(ValidationError, match="cannot carry findings"):
        ScreeningResult(
            study_instance_uid=STUDY, status="error", reason="corrupt: x", pipeline_version="v",
            vertebrae=(finding("L1"),),
        )


def test_error_keeps_the_code_and_message_of_a_study_error():
    result = ScreeningResult.error(
        STUDY, CorruptStudyError("slice 12 has no pixel data"), timings_ms={"load": 3.0}
    )
    assert result.status == "error"
    assert result.reason == "corrupt: slice 12 has no pixel data"
    assert result.reason_code == "corrupt"
    assert result.series_instance_uid is None and result.vertebrae == ()
    assert (result.flag, result.max_genant_grade) == (False, 0)
    assert result.pipeline_version.startswith("vcfscreen ")
    assert ScreeningResult.from_json(result.to_json_line()) == result


def test_error_of_an_unexpected_exception_is_internal():
    result = ScreeningResult.error(STUDY, RuntimeError("index 3 is out of bounds"), series_instance_uid=SERIES)
    assert result.reason == "internal: RuntimeError: index 3 is out of bounds"
    assert result.series_instance_uid == SERIES
    assert ScreeningResult.error(STUDY, KeyError()).reason == "internal: KeyError: no message"


def test_not_eligible_from_an_error_or_a_message():
    from_error = ScreeningResult.not_eligible(STUDY, NotEligibleError("no axial CT series thinner than 3.0 mm"))
    assert from_error.status == "not_eligible"
    assert from_error.reason == "not_eligible: no axial CT series thinner than 3.0 mm"
    plain = ScreeningResult.not_eligible(STUDY, "modality MR")
    assert plain.reason == "not_eligible: modality MR"
    coded = ScreeningResult.not_eligible(STUDY, "coverage: series covers 90 mm, 150 mm needed")
    assert coded.reason_code == "coverage"


def test_from_exception_chooses_the_status():
    assert ScreeningResult.from_exception(STUDY, NotEligibleError("modality MR")).status == "not_eligible"
    transient = ScreeningResult.from_exception(STUDY, TransientError("PACS answered 503"))
    assert (transient.status, transient.reason_code) == ("error", "transient")


def test_no_nan_can_reach_the_json_line():
    result = ok_result({"L1": 2})
    # Bypass validation on purpose: the serialiser itself must refuse a NaN.
    broken = result.model_copy(update={"timings_ms": {"infer": math.nan}})
    with pytest.raises(ValueError):
        broken.to_json_line()
    assert "NaN" not in result.to_json_line()
