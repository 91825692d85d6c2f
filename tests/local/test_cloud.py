"""The whole local cloud: the CLI's up / env / status / down, and log shipping."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import boto3
import psutil
import pytest

from starburst_local import LocalCloud
from starburst_local.procs import listening_addresses
from starburst_sdk._config import DeploymentConfig, parameter_name

pytestmark = [pytest.mark.cloud, pytest.mark.slow]
CLI = [str(Path(sys.executable).with_name("starburst-cli"))]


def _cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "local", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    return env


def test_up_env_status_down(tmp_path: Path) -> None:
    up = _cli("up", "--localstack-port", "0", "--runner-port", "0", state_dir=tmp_path)
    assert up.returncode == 0, up.stderr
    try:
        state = json.loads((tmp_path / "state.json").read_text())
        pids = [state["localstack"]["pid"], state["runner"]["pid"]]
        for pid in pids:
            assert {ip for ip, _ in listening_addresses(pid)} == {"127.0.0.1"}
        assert _cli("status", state_dir=tmp_path).returncode == 0
        env = _parse_exports(_cli("env", state_dir=tmp_path).stdout)
        assert env["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"].endswith(
            str(state["localstack"]["port"])
        )
        probe = (
            "import boto3, json; from starburst_sdk._config import load_config; "
            "print(load_config(boto3.client('ssm'), 'default').cluster)"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
        assert out.stdout.strip() == "starburst-default", out.stderr
    finally:
        down = _cli("down", state_dir=tmp_path)
    assert down.returncode == 0, down.stderr
    assert not any(
        psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids
    )
    assert _cli("status", state_dir=tmp_path).returncode == 1
    assert not (tmp_path / "state.json").exists()


def test_session_cloud_config_and_awslogs(local_cloud: LocalCloud) -> None:
    env = local_cloud.env
    kw = {
        "region_name": env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }
    ssm = boto3.client("ssm", endpoint_url=env["AWS_ENDPOINT_URL_SSM"], **kw)
    doc = json.loads(
        ssm.get_parameter(Name=parameter_name("default"), WithDecryption=True)[
            "Parameter"
        ]["Value"]
    )
    cfg = DeploymentConfig.from_document(doc, "test")
    ecs = boto3.client("ecs", endpoint_url=env["AWS_ENDPOINT_URL_ECS"], **kw)
    td = ecs.register_task_definition(
        family="logs",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "worker",
                "image": "local",
                "memory": 512,
                "command": ["python", "-c", "print('hello from the task')"],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": cfg.log_group,
                        "awslogs-region": cfg.region,
                        "awslogs-stream-prefix": "sb",
                    },
                },
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    arn = ecs.run_task(
        cluster=cfg.cluster,
        taskDefinition=td,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(cfg.subnets),
                "securityGroups": list(cfg.security_groups),
            }
        },
    )["tasks"][0]["taskArn"]
    logs = boto3.client(
        "logs", endpoint_url=env["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"], **kw
    )
    stream = f"sb/worker/{arn.split('/')[-1]}"
    messages: list[str] = []
    deadline = time.monotonic() + 60
    while not messages and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            events = logs.get_log_events(
                logGroupName=cfg.log_group, logStreamName=stream
            )["events"]
        except logs.exceptions.ResourceNotFoundException:
            continue
        messages = [e["message"] for e in events]
    assert messages == ["hello from the task"]
