"""The CLI's parts that need no cloud: durations, prices, help, the messages of\ndoctor, image build, infra init, prices refresh, local and quota."""

import json
from pathlib import Path

import pytest
import typer
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from typer.testing import CliRunner

from starburst_cli import _output, checks, infra, prices
from starburst_cli.main import app
from starburst_sdk import _cost
from starburst_sdk._config import DeploymentConfig

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


# -- doctor's image check ---------------------------------------------------------


def _config(worker_image: str) -> DeploymentConfig:
    return DeploymentConfig(
        deployment="default",
        region="us-east-1",
        bucket="b",
        prefix="p/",
        cluster="c",
        subnets=("subnet-1",),
        security_groups=("sg-1",),
        assign_public_ip=True,
        execution_role_arn="arn:aws:iam::1:role/e",
        task_role_arn="arn:aws:iam::1:role/t",
        log_group="/starburst/default",
        ecr_repository_url=REPO,
        queue_prefix="q",
        worker_image=worker_image,
    )


REPO = "1.dkr.ecr.us-east-1.amazonaws.com/starburst-default"


class _Ecr:
    def describe_images(self, **kwargs):
        raise ClientError(
            {"Error": {"Code": "ImageNotFoundException", "Message": "no"}},
            "DescribeImages",
        )


class _Clients:
    ecr = _Ecr()


@pytest.mark.parametrize("image", ["", "auto"])
def test_doctor_image_ok_without_worker_image(image):
    detail = checks._image(_Clients(), _config(image))
    assert "first Plan" in detail and "starburst-cli image build" in detail


def test_doctor_missing_named_image_says_image_build():
    with pytest.raises(ValueError) as info:
        checks._image(_Clients(), _config(f"{REPO}:v1"))
    text = str(info.value)
    assert f"{REPO}:v1 is not in ECR" in text
    assert "`starburst-cli image build`" in text and "docker build" not in text


# -- image build ------------------------------------------------------------------


@pytest.fixture
def fake_build(monkeypatch):
    """``ensure_image`` replaced: records its arguments, logs like the real one."""
    from starburst_sdk import _image

    calls = []
    warning = "mylib: an editable install (/src/mylib), so it is not put in the image"

    def ensure_image(**kwargs):
        calls.append(kwargs)
        _image.log.info("worker image: environment from /p/requirements.txt")
        _image.log.warning("worker image: %s", warning)
        inputs = _image.ImageInputs({"kind": "installed"}, "3.11", {}, "b", "x86_64")
        return _image.ImageResult(
            f"{REPO}@sha256:00",
            inputs.tag,
            "sha256:00",
            False,
            None,
            inputs,
            (warning,),
        )

    monkeypatch.setattr(_image, "ensure_image", ensure_image)
    return calls


def test_image_build_prints_a_warning_once_and_defaults_to_x86_64(fake_build):
    result = runner.invoke(app, ["image", "build"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("editable install") == 1
    assert "warning: worker image: mylib" in result.stderr
    assert "environment from /p/requirements.txt" in result.stderr
    assert fake_build[0]["arch"] == "x86_64"  # as Plan's default, not this machine's
    assert fake_build[0]["project_dir"] == Path.cwd()
    as_json = runner.invoke(app, ["image", "build", "--json", "--arch", "aarch64"])
    assert json.loads(as_json.stdout)["warnings"][0].startswith("mylib:")
    assert fake_build[1]["arch"] == "arm64"


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--builder", "podman"], {}, "'podman' is not a builder"),
        ([], {"STARBURST_IMAGE_BUILDER": "kaniko"}, "'kaniko' is not a builder"),
        (["--arch", "sparc"], {}, "'sparc' is not an architecture"),
        (["--project", "/nonexistent/proj"], {}, "/nonexistent/proj"),
    ],
)
def test_image_build_bad_input_is_refused_before_any_network(
    fake_build, args, env, says
):
    result = runner.invoke(app, ["image", "build", *args], env=env)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.stderr.replace("│", " ").split())
    assert not fake_build


def test_image_build_help_shows_the_defaults():
    result = runner.invoke(app, ["image", "build", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "[default: (the working dir)]" in text
    assert "[default: (python:<this Python>-slim)]" in text
    assert "[default: x86_64]" in text and "[default: (auto)]" in text
    for command in (["prices", "refresh"], ["local", "env"]):
        shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert "[default: ($STARBURST_" in " ".join(shown.output.split()), command


# -- infra init -------------------------------------------------------------------

#: `terraform init -json` without network (HTTPS_PROXY to a closed port), trimmed.
INIT_OUT = "\n".join(
    json.dumps(e)
    for e in [
        {"@level": "info", "@message": "Terraform 1.11.4", "type": "version"},
        {
            "@level": "info",
            "@message": "Initializing modules...",
            "type": "init_output",
        },
        {"@level": "info", "@message": "- ecr in modules/ecr", "type": "log"},
        {
            "@level": "error",
            "@message": "Error: Failed to query available provider packages",
            "type": "diagnostic",
            "diagnostic": {
                "severity": "error",
                "summary": "Failed to query available provider packages",
                "detail": "Could not retrieve the list of available versions for "
                "provider hashicorp/aws: could not connect to registry.terraform.io: "
                "failed to request discovery document: dial tcp 127.0.0.1:9: "
                "connect: connection refused\n\nTo see which modules are currently "
                "depending on hashicorp/aws, run:\n    terraform providers",
            },
        },
    ]
)


def test_infra_init_failure_shows_the_diagnostic_and_the_fix():
    text = infra.init_failure(INIT_OUT, "Warning: Unable to open CLI configuration")
    lines = text.splitlines()
    assert lines[:3] == [
        "error: terraform init failed:",
        "Failed to query available provider packages",
        "  Could not retrieve the list of available versions for provider "
        "hashicorp/aws: could not connect to registry.terraform.io: failed to "
        "request discovery document: dial tcp 127.0.0.1:9: connect: connection "
        "refused",
    ]
    assert "Initializing" not in text and "Warning" not in text and "{" not in text
    assert "could not download the AWS provider" in text
    assert "TF_CLI_CONFIG_FILE" in text
    other = infra.init_failure("", "Error: Unsupported argument\n\n  on main.tf\n")
    assert other.splitlines()[1:] == ["Error: Unsupported argument", "  on main.tf"]
    assert "AWS provider" not in other


# -- prices refresh ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            EndpointConnectionError(endpoint_url="https://api.pricing.us-east-1.x/"),
            "cannot reach https://api.pricing.us-east-1.x/: check the network",
        ),
        (
            ClientError(
                {"Error": {"Code": "UnrecognizedClientException", "Message": "bad"}},
                "GetProducts",
            ),
            "refused GetProducts (UnrecognizedClientException)",
        ),
        (NoCredentialsError(), "no AWS credentials for the Pricing API"),
    ],
)
def test_prices_refresh_unreachable_names_the_real_fix(
    tmp_path, monkeypatch, error, says
):
    monkeypatch.setenv("STARBURST_PRICES", str(tmp_path / "prices.json"))
    monkeypatch.setattr(prices, "_pricing_client", lambda: object())

    def fail(client):
        raise error

    monkeypatch.setattr(_cost, "refresh_prices", fail)
    result = runner.invoke(app, ["prices", "refresh"])
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert says in text and "us-east-1 and ap-south-1" in text
    assert "not by the local cloud" in text and "start the local cloud" not in text
    assert "bundled table stays in use" in text


# -- local ------------------------------------------------------------------------


def test_local_commands_name_the_state_dir_in_their_hint(tmp_path):
    state = tmp_path / "my cloud"
    result = runner.invoke(app, ["local", "env", "--state-dir", str(state)])
    assert result.exit_code == 1
    assert f"`starburst-cli local up --state-dir '{state}'`" in result.stderr
    status = runner.invoke(app, ["local", "status", "--state-dir", str(state)])
    assert status.exit_code == 1
    assert f"local up --state-dir '{state}'" in " ".join(status.stdout.split())
    plain = runner.invoke(
        app, ["local", "env"], env={"STARBURST_LOCAL_DIR": str(state)}
    )
    assert "`starburst-cli local up`" in plain.stderr


# -- quota ------------------------------------------------------------------------


def test_quota_spot_without_request_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(checks, "Clients", lambda: pytest.fail("reached AWS"))
    result = runner.invoke(app, ["quota", "--spot"])
    assert result.exit_code == 2
    assert "--request" in result.stderr


def test_quota_request_at_or_below_the_quota_says_so(monkeypatch):
    class Quotas:
        def request_service_quota_increase(self, **kwargs):
            pytest.fail("filed a request below the quota")

    class Clients:
        region = "us-east-1"
        service_quotas = Quotas()

    report = {
        kind: {"quota_code": code, "name": "", "limit": 16.0, "in_use": 0.0}
        for kind, code in checks.QUOTAS.items()
    }
    monkeypatch.setattr(checks, "Clients", Clients)
    monkeypatch.setattr(checks, "read_quotas", lambda clients: report)
    for args, kind in (
        (["--request", "8"], "On-Demand"),
        (["--request", "16", "--spot"], "Spot"),
    ):
        result = runner.invoke(app, ["quota", *args])
        assert result.exit_code == 1
        text = " ".join(result.stderr.split())
        assert f"Fargate {kind} vCPU quota" in text and "is already 16" in text
        assert "at or above" in text and "already open" not in text
