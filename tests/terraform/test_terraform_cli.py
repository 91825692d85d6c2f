"""`starburst-cli infra`: help, and a clear failure when no Terraform is installed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from starburst_cli import infra

runner = CliRunner()


def test_infra_help_lists_plan_apply_destroy() -> None:
    result = runner.invoke(infra.app, ["--help"])
    assert result.exit_code == 0
    for command in ("plan", "apply", "destroy"):
        assert command in result.output


@pytest.mark.parametrize("command", ["plan", "apply", "destroy"])
def test_infra_without_terraform_or_tofu_fails_with_install_hint(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(infra.shutil, "which", lambda _name: None)
    result = runner.invoke(infra.app, [command, "--region", "us-east-1"])
    assert result.exit_code == 1
    assert "Terraform" in result.output and "OpenTofu" in result.output


def test_infra_without_region_is_a_bad_parameter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(infra.shutil, "which", lambda name: f"/usr/bin/{name}")
    result = runner.invoke(infra.app, ["plan"])
    assert result.exit_code == 2
    assert "region" in result.output
