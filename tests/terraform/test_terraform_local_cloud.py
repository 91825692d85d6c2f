"""Apply the root module to the local cloud, check what it made, destroy it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from tf_helpers import assert_task_policy_least_privilege

from starburst_sdk._config import DeploymentConfig, parameter_name

pytestmark = [pytest.mark.cloud, pytest.mark.slow, pytest.mark.timeout(900)]


def _client(env: dict[str, str], service: str, suffix: str) -> Any:
    import boto3

    return boto3.client(
        service,
        region_name=env["AWS_REGION"],
        endpoint_url=env[f"AWS_ENDPOINT_URL_{suffix}"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _square(x: int) -> int:
    return x * x


def test_terraform_apply_use_destroy_on_local_cloud(
    local_cloud_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starburst_local.provision import deprovision, provision

    env, deployment, state = local_cloud_env, "tfcycle", tmp_path / "tf"

    started = time.monotonic()
    doc = provision(env, deployment, state)
    print(f"apply: {time.monotonic() - started:.1f} s")
    try:
        config = DeploymentConfig.from_document(doc, "the applied document")
        assert config.deployment == deployment
        assert config.region == env["AWS_REGION"]

        ssm = _client(env, "ssm", "SSM")
        stored = ssm.get_parameter(Name=parameter_name(deployment), WithDecryption=True)
        assert json.loads(stored["Parameter"]["Value"]) == doc

        _client(env, "s3", "S3").head_bucket(Bucket=config.bucket)
        clusters = _client(env, "ecs", "ECS").describe_clusters(
            clusters=[config.cluster]
        )
        assert clusters["clusters"][0]["status"] == "ACTIVE"
        subnets = _client(env, "ec2", "EC2").describe_subnets(
            SubnetIds=list(config.subnets)
        )
        assert len(subnets["Subnets"]) == len(config.subnets) >= 2
        logs = _client(env, "logs", "CLOUDWATCH_LOGS")
        groups = logs.describe_log_groups(logGroupNamePrefix=config.log_group)
        assert [g["logGroupName"] for g in groups["logGroups"]] == [config.log_group]
        ecr = _client(env, "ecr", "ECR")
        repo = ecr.describe_repositories()["repositories"]
        assert config.ecr_repository_url in [r["repositoryUri"] for r in repo]

        # The SDK runs a task with nothing but the document Terraform wrote.
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        from starburst_local.cloud import LOCAL_WORKER_IMAGE
        from starburst_sdk import Plan

        with Plan(workers=2, cpu=0.25, memory="512MB", deployment=deployment,
                  image=LOCAL_WORKER_IMAGE, idle_timeout=20) as plan:
            assert list(plan.map(_square, range(10))) == [x * x for x in range(10)]

        iam = _client(env, "iam", "IAM")
        task_role = config.task_role_arn.rsplit("/", 1)[1]
        for name in iam.list_role_policies(RoleName=task_role)["PolicyNames"]:
            policy = iam.get_role_policy(RoleName=task_role, PolicyName=name)
            document = policy["PolicyDocument"]
            if isinstance(document, str):
                document = json.loads(document)
            account = "000000000000"
            assert_task_policy_least_privilege(
                document,
                object_arn=f"arn:aws:s3:::{config.bucket}/{config.prefix}*",
                queue_arn=f"arn:aws:sqs:{config.region}:{account}:{config.queue_prefix}-*",
                log_group_arn=(
                    f"arn:aws:logs:{config.region}:{account}:log-group:{config.log_group}"
                ),
            )
    finally:
        started = time.monotonic()
        deprovision(env, deployment, state)
        print(f"destroy: {time.monotonic() - started:.1f} s")

    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=parameter_name(deployment))
