"""boto3 clients: region and endpoints from the standard AWS variables."""

import pytest

from starburst_sdk._aws import Clients
from starburst_sdk._errors import ConfigError


def test_clients_region_from_aws_region_alone(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert Clients().region == "eu-west-1"
    assert Clients().s3.meta.region_name == "eu-west-1"


def test_clients_without_region_names_the_variable(aws_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="set AWS_REGION"):
        Clients()
