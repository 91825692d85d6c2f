"""The fleet commands' parts that need no cloud: durations, prices, help."""

import json

import pytest
import typer
from typer.testing import CliRunner

from starburst_cli import _output, prices
from starburst_cli.main import app
from starburst_sdk import _cost

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * 86400),
        ("12h", 43200),
        ("30m", 1800),
        ("90s", 90),
        ("0", 0),
        ("1.5h", 5400),
        ("2w", 14 * 86400),
    ],
)
def test_parse_duration_units(text, seconds):
    assert _output.parse_duration(text) == seconds


def test_parse_duration_rejects_nonsense():
    with pytest.raises(typer.BadParameter, match="7d"):
        _output.parse_duration("a week")


def test_cleanup_bad_duration_is_a_usage_error():
    result = runner.invoke(app, ["cleanup", "--older-than", "soon"])
    assert result.exit_code == 2
    assert "not a duration" in result.output


def test_every_fleet_command_has_help():
    for command in (
        "status",
        "sessions",
        "cost",
        "logs",
        "cancel",
        "cleanup",
        "doctor",
        "quota",
        "prices",
    ):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output


def test_no_region_exits_1_naming_the_fix(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "AWS_REGION" in result.stderr


def test_prices_refresh_writes_the_table_the_sdk_reads(tmp_path, monkeypatch):
    table = json.loads(json.dumps(_cost.load_prices()))
    table["as_of"] = "2030-01-01"
    table["regions"] = {"us-east-1": table["regions"]["us-east-1"]}
    target = tmp_path / "prices.json"
    monkeypatch.setenv("STARBURST_PRICES", str(target))
    monkeypatch.setattr(prices, "_pricing_client", lambda: object())
    monkeypatch.setattr(_cost, "refresh_prices", lambda client: table)
    result = runner.invoke(app, ["prices", "refresh"])
    assert result.exit_code == 0, result.output
    assert str(target) in result.stdout
    assert _cost.load_prices()["as_of"] == "2030-01-01"
    shown = json.loads(runner.invoke(app, ["prices", "show", "--json"]).stdout)
    assert shown["path"] == str(target) and list(shown["regions"]) == ["us-east-1"]
    missing = runner.invoke(app, ["prices", "show", "--region", "eu-west-1"])
    assert missing.exit_code == 3


def test_prices_refresh_failure_keeps_the_old_table(tmp_path, monkeypatch):
    monkeypatch.setenv("STARBURST_PRICES", str(tmp_path / "prices.json"))
    monkeypatch.setattr(prices, "_pricing_client", lambda: object())

    def empty(client):
        raise ValueError("the AWS Pricing API returned no complete Fargate prices")

    monkeypatch.setattr(_cost, "refresh_prices", empty)
    result = runner.invoke(app, ["prices", "refresh"])
    assert result.exit_code == 1
    assert "bundled table stays in use" in result.stderr
    assert not (tmp_path / "prices.json").exists()
