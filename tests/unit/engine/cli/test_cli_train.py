"""`vcfscreen train` end to end at toy size: both models exported, the extras recorded in training.json."""

from __future__ import annotations

import json
import logging
import re

import onnx
import pytest
from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()
TOY = ["--studies", "2", "--validation", "1", "--full-studies", "0", "--matrix", "64"]
"""The smallest training data: each test adds the options it is about."""


@pytest.fixture(autouse=True)
def _root_logger_kept(monkeypatch):
    """The command configures logging onto the runner's temporary stderr; keep the root logger ours."""
    root_logger = logging.getLogger()
    monkeypatch.setattr(root_logger, "handlers", list(root_logger.handlers))
    monkeypatch.setattr(root_logger, "level", root_logger.level)


def test_train_exports_both_models_and_records_every_data_source(tmp_path):
    out = tmp_path / "models"
    run = runner.invoke(app, [
        "train", *TOY, "--seg-steps", "2", "--cls-steps", "2", "--seg-patch", "32", "--seg-fracture", "0.5",
        "--seg-adjacent", "1", "--cls-upper", "1", "--seed", "7", "--version", "t",
        "--out", str(out), "--cache", str(tmp_path / "cache"),
    ])
    assert run.exit_code == 0, run.output
    info = json.loads((out / "training.json").read_text())
    assert {m["name"] for m in info["models"]} == {"vertebra_seg", "vertebra_cls"}
    for model in info["models"]:
        onnx.checker.check_model(onnx.load(str(out / model["file"])))
    recipe = info["training"]["recipe"]
    assert "1 with two adjacent vertebrae fractured (seeds 400007..400007)" in recipe["segmenter"]["data"]
    assert "adjacent" not in recipe["classifier"]["data"]
    assert "1 with a fracture planted at T1..T5 (seeds 300007..300007)" in recipe["classifier"]["data"]
    assert "up to 50% on a grade 2-3 vertebra" in recipe["segmenter"]["patches"]
    assert (out / "MODEL_CARD.md").read_text().count("two adjacent vertebrae fractured") == 1


def _refused(tmp_path, *options: str) -> str:
    cache, out = tmp_path / "cache", tmp_path / "models"
    run = runner.invoke(app, ["train", *TOY, "--out", str(out), "--cache", str(cache), *options])
    assert run.exit_code == 2, run.output
    # refused before any phantom was made or any folder written
    assert not cache.exists() and not out.exists()
    return " ".join(re.sub("[│╭╮╰╯─]", " ", run.output).split())  # the message without rich's box


def test_train_refuses_a_bad_option_before_making_any_phantom(tmp_path):
    assert "ResNet depth 20 is not one of [18, 34, 50]" in _refused(tmp_path, "--depth", "20")
    assert "--seg-patch 40 must be a multiple of 16" in _refused(tmp_path, "--seg-patch", "40")
    shares = _refused(tmp_path, "--seg-edge", "0.6", "--seg-fracture", "0.6")
    assert "--seg-edge 0.6 and --seg-fracture 0.6:" in shares and "together exceed every patch" in shares
    missing = tmp_path / "no-such.onnx"
    assert f"--seg-init {missing} is not a file" in _refused(tmp_path, "--seg-init", str(missing))


def test_a_classifier_run_does_not_check_the_segmenter_options(tmp_path):
    out = tmp_path / "models"
    run = runner.invoke(app, [
        "train", "--what", "classifier", *TOY, "--cls-steps", "2", "--seg-patch", "40", "--seg-init", str(tmp_path / "none.onnx"),
        "--out", str(out), "--cache", str(tmp_path / "cache"),
    ])
    assert run.exit_code == 0, run.output
    assert [m["name"] for m in json.loads((out / "training.json").read_text())["models"]] == ["vertebra_cls"]


def test_train_levels_refuses_bad_seeds_before_screening_anything(tmp_path):
    bad = runner.invoke(app, ["train-levels", "--typical", "12-10", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "seed range '12-10'" in bad.output
    none = runner.invoke(app, ["train-levels", "--typical", "", "--rib11", "", "--rib13", "", "--out", str(tmp_path)])
    assert none.exit_code == 2 and "no seeds given" in none.output
    assert not any(tmp_path.iterdir())
