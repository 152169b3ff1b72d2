"""The serve / submit / bench commands: usage errors are exit code 2 with a message that says what to change."""

from __future__ import annotations

from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()


def test_submit_needs_folders_or_from_pacs(tmp_path):
    result = runner.invoke(app, ["submit"])
    assert result.exit_code == 2 and "give study folders, or --from-pacs" in result.output
    result = runner.invoke(app, ["submit", str(tmp_path), "--from-pacs"])
    assert result.exit_code == 2


def test_submit_refuses_a_missing_folder(tmp_path):
    result = runner.invoke(app, ["submit", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_serve_refuses_a_malformed_triton_url():
    result = runner.invoke(app, ["serve", "--backend", "triton", "--triton-url", "not a url"])
    assert result.exit_code == 2 and "--triton-url" in result.output


def test_bench_refuses_bad_worker_counts():
    result = runner.invoke(app, ["bench", "--workers", "0,2"])
    assert result.exit_code == 2 and "positive worker counts" in result.output
    result = runner.invoke(app, ["bench", "--source", "ftp"])
    assert result.exit_code == 2 and "file or dicomweb" in result.output
