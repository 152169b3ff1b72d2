"""``vcfscreen evaluate`` end to end on two hand-made studies, with an oracle backend.

Everything but the networks is real: DICOM loading, DALI preprocessing, level labelling,
morphometry, grading, the truth files, the evaluation and the command. Study A has a grade 3
wedge at L1 that the oracle's classifier confirms; study B is normal with a sclerotic
metastasis planted at T11, where the classifier calls a fracture (a false positive).
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from evaluate_studies import OracleBackend, RecordingPreprocessor, write_study
from typer.testing import CliRunner

import engine.screen
from engine.cli import app
from engine.errors import ConfigurationError
from engine.evaluate import evaluate_folder
from engine.logs import study_ref
from engine.settings import Settings

runner = CliRunner()
UID_A = "1.2.826.0.1.3680043.8.498.9001"
UID_B = "1.2.826.0.1.3680043.8.498.9002"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    a = write_study(root, UID_A, wedge="L1")
    b = write_study(root, UID_B, confounders=[{"type": "sclerotic_metastasis", "levels": ["T11"]}])
    return root, [a, b]


@pytest.fixture
def oracle(studies, monkeypatch):
    """The oracle in place of the ONNX backend; the root logger restored afterwards (the
    command configures logging onto the runner's temporary stderr)."""
    _, built = studies
    root_logger = logging.getLogger()
    monkeypatch.setattr(root_logger, "handlers", list(root_logger.handlers))
    monkeypatch.setattr(root_logger, "level", root_logger.level)
    # crops come cranial to caudal: T10, T11, T12, L1, ...
    backend = OracleBackend(built, fractured={UID_A: {3}, UID_B: {1}})
    monkeypatch.setattr(engine.screen, "Preprocessor", RecordingPreprocessor)
    monkeypatch.setattr(engine.screen, "make_backend", lambda settings: backend)
    return backend


def test_evaluate_screens_and_reports_every_figure(studies, oracle, tmp_path):
    root, _ = studies
    out, results = tmp_path / "report.json", tmp_path / "results.jsonl"
    run = runner.invoke(app, ["evaluate", str(root), "--out", str(out), "--results", str(results)])
    assert run.exit_code == 0, run.output
    for text in ("level identification", ">= 99%", "sensitivity, grade 3", "sclerotic_metastasis", "Dice"):
        assert text in run.stdout

    report = json.loads(out.read_text())
    assert report["studies"]["analysed"] == 2 and report["studies"]["unanalysable_share"] == 0.0
    ident = report["identification"]
    assert ident["true_vertebrae"] == 18  # T10-L5 and S1, twice
    assert ident["detection_rate"] == 1.0 and ident["level_identification"] == 1.0
    assert ident["false_detections"] == 0
    grade2 = next(t for t in report["fracture"]["thresholds"] if t["threshold"] == 2)
    assert (grade2["tp"], grade2["fp"], grade2["fn"]) == (1, 1, 0)
    assert report["fracture"]["auc_pairs"] == 16  # S1 is not scored by the classifier
    assert report["fracture"]["auc_grade2"] == pytest.approx(14.5 / 15)  # one positive; the false call ties it
    assert report["false_positives"]["by_confounder"] == {"sclerotic_metastasis": 1}
    assert (report["flag"]["tp"], report["flag"]["fp"]) == (1, 1)
    # the labels are stored top down, the loaded volume bottom up: Dice ~1 only if the
    # evaluation put the truth the right way round
    assert report["dice"]["studies"] == 2 and report["dice"]["min_bodies_dice"] > 0.95
    assert report["dice"]["mean_vertebra_dice"] > 0.9
    assert report["runtime"]["studies"] == 2 and report["runtime"]["total_s"] > 0
    targets = {t["figure"]: t["met"] for t in report["targets"]}
    assert targets["level_identification"] and not targets["ppv_grade2"]
    # two studies cannot settle a 99% target: the interval is printed and reaches below it
    identification = next(t for t in report["targets"] if t["figure"] == "level_identification")
    assert identification["interval"][1] == 1.0 and identification["interval"][0] < 0.99
    assert "95% interval" in run.stdout and "met, within noise" in run.stdout
    lines = results.read_text().splitlines()
    assert sorted(json.loads(line)["study_instance_uid"] for line in lines) == [UID_A, UID_B]

    # the same results read back: every figure but Dice, and nothing changed against the first run
    first = tmp_path / "first.json"
    first.write_text(out.read_text())
    again = runner.invoke(app, ["evaluate", str(root), "--results", str(results), "--out", str(out),
                                "--against", str(first)])
    assert again.exit_code == 0, again.output
    assert "against the earlier report: 2 studies in both" in again.stdout and "no study changed" in again.stdout
    # an earlier report that named one study's levels worse: that study is listed, by its hash
    earlier = json.loads(first.read_text())
    earlier["per_study"][0]["correct_level"] -= 3
    first.write_text(json.dumps(earlier))
    moved = runner.invoke(app, ["evaluate", str(root), "--results", str(results), "--against", str(first)])
    assert moved.exit_code == 0, moved.output
    uid = earlier["per_study"][0]["study_instance_uid"]
    assert "levels: 1 study better, 0 worse" in moved.stdout
    assert study_ref(uid) in moved.stdout and uid not in moved.stdout
    reread = json.loads(out.read_text())
    assert reread["identification"] == report["identification"]
    assert reread["fracture"] == report["fracture"]
    assert reread["dice"]["studies"] == 0 and "Dice needs" in reread["dice"]["note"]


def test_evaluate_folder_honours_the_limit(studies, oracle):
    root, _ = studies
    report = evaluate_folder(root, Settings(), limit=1)
    assert report.studies.valid == 1
    assert report.per_study[0].study_instance_uid == UID_A  # folders in name order
    assert report.per_study[0].bodies_dice > 0.95


def test_a_bad_earlier_report_is_refused_before_any_screening(studies, oracle, tmp_path):
    root, _ = studies
    not_a_report = tmp_path / "notes.json"
    not_a_report.write_text('{"source": "x"}')
    run = runner.invoke(app, ["evaluate", str(root), "--against", str(not_a_report)])
    assert run.exit_code == 2 and "is not a vcfscreen evaluate report" in run.output
    run = runner.invoke(app, ["evaluate", str(root), "--against", str(tmp_path / "missing.json")])
    assert run.exit_code == 2 and "cannot read the earlier report" in run.output
    assert oracle.current is None, "a bad --against file must fail before any study is screened"


def test_evaluate_without_truth_is_a_usage_error(tmp_path, oracle):
    run = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert run.exit_code == 2
    assert "no study folder with a truth.json" in run.output


def test_missing_models_are_a_usage_error_naming_them(studies, monkeypatch):
    root, _ = studies
    root_logger = logging.getLogger()
    monkeypatch.setattr(root_logger, "handlers", list(root_logger.handlers))

    def no_models(settings):
        raise ConfigurationError("the vertebra_seg model /nowhere/vertebra_seg.onnx does not exist")

    monkeypatch.setattr(engine.screen, "make_backend", no_models)
    run = runner.invoke(app, ["evaluate", str(root)])
    assert run.exit_code == 2
    assert "cannot load the models" in run.output and "/nowhere/vertebra_seg.onnx" in run.output


def test_several_folders_are_pooled_into_one_report(studies, oracle, tmp_path):
    _, built = studies
    a, b = (study.folder for study in built)
    out = tmp_path / "pooled.json"
    # each study folder named on its own, one of them twice: two studies, each counted once
    run = runner.invoke(app, ["evaluate", str(a), str(b), str(a), "--out", str(out)])
    assert run.exit_code == 0, run.output
    report = json.loads(out.read_text())
    assert report["studies"]["analysed"] == 2
    assert sorted(s["study_instance_uid"] for s in report["per_study"]) == [UID_A, UID_B]
    assert report["source"] == f"{a} + {b} + {a}"
    grade2 = next(t for t in report["fracture"]["thresholds"] if t["threshold"] == 2)
    assert (grade2["tp"], grade2["fp"], grade2["fn"]) == (1, 1, 0)  # as when both sit under one folder
    missing = runner.invoke(app, ["evaluate", str(a), str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and f"{tmp_path / 'nowhere'} does not exist" in " ".join(missing.output.split())
    # the same study in two folders (sets made with one seed) is refused before any screening
    copy = tmp_path / "copy" / a.name
    shutil.copytree(a, copy)
    twice = runner.invoke(app, ["evaluate", str(a.parent), str(copy.parent)])
    said = " ".join(twice.output.split())
    assert twice.exit_code == 2 and f"is under both {a.parent} and {copy.parent}" in said
    assert UID_A not in said and study_ref(UID_A) in said  # the sets are named, the study by its hash
    both = tmp_path / "both"
    for name in ("x", "y"):
        shutil.copytree(a, both / name / a.name)
    twice = runner.invoke(app, ["evaluate", str(both)])
    assert twice.exit_code == 2 and f"is twice under {both}" in " ".join(twice.output.split())
    # one folder spelt two ways is one folder
    again = runner.invoke(app, ["evaluate", str(a.parent), f"{a.parent}/.", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["studies"]["analysed"] == 2
