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


@pytest.mark.parametrize("partial", [False, True], ids=["none", "key-only"])
def test_plan_without_credentials_says_how_to_give_them(
    aws_env, monkeypatch, tmp_path, partial
):
    from starburst_sdk import CredentialsError, Plan

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    if partial:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialsError) as info:
        Plan(workers=1)
    text = str(info.value)
    assert ("SSM parameter /starburst/default/config" in text) != partial
    assert ("AWS_SECRET_ACCESS_KEY" in text) and ("ssm" in text) == partial
    assert "AWS_PROFILE" in text and "starburst-cli local env" in text
