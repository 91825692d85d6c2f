"""Fixtures for the local cloud's tests.

``runner``: an in-process local Fargate runner (moto + driver, no LocalStack) per
module. The full local cloud (``local_cloud``) is shared by the whole suite and
lives in tests/conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from starburst_local.runner import Runner, RunnerConfig

CREDS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    config = RunnerConfig(
        state_dir=tmp_path_factory.mktemp("runner"),
        port=0,
        stop_grace=1.0,
        quota_on_demand=24,
        quota_spot=8,
        ship_logs=False,
        extra_env={"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
    )
    with Runner(config) as r:
        yield r


class Ecs:
    """A tiny ECS helper bound to one runner: cluster, network, task definitions."""

    def __init__(self, url: str) -> None:
        self.client = boto3.client("ecs", endpoint_url=url, **CREDS)
        ec2 = boto3.client("ec2", endpoint_url=url, **CREDS)
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"][
            "SubnetId"
        ]
        self.cluster = self.client.create_cluster(
            clusterName="t", capacityProviders=["FARGATE", "FARGATE_SPOT"]
        )["cluster"]["clusterName"]

    def taskdef(self, script: str, memory: int = 512, **container: Any) -> str:
        cdef = {
            "name": "main",
            "image": "local",
            "memory": memory,
            "command": ["python", "-c", script],
            **container,
        }
        return self.client.register_task_definition(
            family="t",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory=str(memory),
            containerDefinitions=[cdef],
        )["taskDefinition"]["taskDefinitionArn"]

    def run(self, taskdef: str, spot: bool = False, **kwargs: Any) -> dict[str, Any]:
        where = (
            {
                "capacityProviderStrategy": [
                    {"capacityProvider": "FARGATE_SPOT", "weight": 1}
                ]
            }
            if spot
            else {"launchType": "FARGATE"}
        )
        resp = self.client.run_task(
            cluster=self.cluster,
            taskDefinition=taskdef,
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": [self.subnet], "securityGroups": []}
            },
            **where,
            **kwargs,
        )
        return resp["tasks"][0]

    def describe(self, arn: str) -> dict[str, Any]:
        return self.client.describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"][0]

    def wait(
        self, arn: str, status: str = "STOPPED", timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.describe(arn)
            if task["lastStatus"] == status or time.monotonic() > deadline:
                return task
            time.sleep(0.1)


@pytest.fixture(scope="module")
def ecs(runner: Runner) -> Ecs:
    return Ecs(runner.url)
