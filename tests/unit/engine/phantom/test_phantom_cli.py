"""``vcfscreen phantom``: the contract layout, determinism, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()


def _run(out: Path, *extra: str):
    return runner.invoke(app, ["phantom", str(out), "--studies", "2", "--seed", "4", "--fast", "--matrix", "64", *extra])


def test_cli_writes_one_folder_per_study_with_truth(tmp_path: Path) -> None:
    result = _run(tmp_path / "one")
    assert result.exit_code == 0, result.output
    folders = sorted(p for p in (tmp_path / "one").iterdir() if p.is_dir())
    assert len(folders) == 2
    for folder in folders:
        truth = json.loads((folder / "truth.json").read_text())
        assert truth["study_instance_uid"] == folder.name
        assert (folder / "labels.npz").is_file()
        screening = [p for p in folder.glob("*.dcm")
                     if pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == truth["series_instance_uid"]]
        assert len(screening) == truth["acquisition"]["slices"] >= 50
        assert pydicom.dcmread(screening[0], stop_before_pixels=True).StudyInstanceUID == folder.name


def test_cli_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    assert _run(tmp_path / "a").exit_code == 0
    assert _run(tmp_path / "b", "--jobs", "2").exit_code == 0
    names_a = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names_a == sorted(p.name for p in (tmp_path / "b").iterdir())
    sample = sorted((tmp_path / "a" / names_a[0]).glob("*.dcm"))[10].name
    one, two = (pydicom.dcmread(tmp_path / run / names_a[0] / sample) for run in ("a", "b"))
    assert one.PixelData == two.PixelData and one.SOPInstanceUID == two.SOPInstanceUID


def test_cli_refuses_contradictory_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phantom", str(tmp_path), "--slices-min", "300", "--slices-max", "200"])
    assert result.exit_code == 2
    assert "slices_min 300 exceeds slices_max 200" in result.output
