from __future__ import annotations

import json

from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()


def test_config_prints_effective_settings_with_secrets_masked(monkeypatch):
    monkeypatch.setenv("VCF_KAFKA__GROUP_ID", "screening-prod")
    monkeypatch.setenv("VCF_PACS__PASSWORD", "s3cret-value")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kafka"]["group_id"] == "screening-prod"
    assert "s3cret-value" not in result.stdout


def test_config_env_form(monkeypatch):
    monkeypatch.setenv("VCF_TRITON__URL", "triton.internal:8001")
    result = runner.invoke(app, ["config", "--env"])
    assert result.exit_code == 0
    assert "VCF_TRITON__URL=triton.internal:8001" in result.stdout.splitlines()


def test_invalid_configuration_is_a_usage_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("VCF_WORKER__MAX_IN_FLIGHT", "-3")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2
    assert "VCF_WORKER__MAX_IN_FLIGHT" in result.output
