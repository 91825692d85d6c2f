"""The local Fargate runner in process: lifecycle, StopTask, memory, faults, quotas."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from starburst_local.cloud import runner_call
from starburst_local.driver import OOM_REASON
from starburst_local.faults import SPOT_REASON
from starburst_local.runner import Runner

from .conftest import CREDS, Ecs

SLEEP_FOREVER = "import time\nwhile True: time.sleep(0.05)"
IGNORE_TERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True: time.sleep(0.05)"
)


def _log(runner: Runner, arn: str) -> str:
    return (
        Path(runner.config.state_dir) / "tasks" / f"{arn.split('/')[-1]}.log"
    ).read_text()


def test_task_runs_to_completion_with_fargate_fields(runner: Runner, ecs: Ecs) -> None:
    script = (
        "import json, os, urllib.request\n"
        "uri = os.environ['ECS_CONTAINER_METADATA_URI_V4']\n"
        "meta = json.load(urllib.request.urlopen(uri + '/task'))\n"
        "print('ARN', meta['TaskARN'], meta['Family'], meta['Revision'])\n"
        "print('GREETING', os.environ['GREETING'], os.environ['AWS_ACCESS_KEY_ID'])\n"
        "raise SystemExit(3)"
    )
    td = ecs.taskdef(script, environment=[{"name": "GREETING", "value": "def"}])
    task = ecs.run(
        td,
        overrides={
            "containerOverrides": [
                {
                    "name": "main",
                    "environment": [{"name": "GREETING", "value": "override"}],
                }
            ]
        },
    )
    assert task["lastStatus"] == "PROVISIONING"
    assert task["createdAt"]
    done = ecs.wait(task["taskArn"])
    assert done["lastStatus"] == "STOPPED"
    assert done["stopCode"] == "EssentialContainerExited"
    assert done["stoppedReason"] == "Essential container in task exited"
    assert done["containers"][0]["exitCode"] == 3
    assert done["capacityProviderName"] == "FARGATE"
    assert (
        done["createdAt"]
        <= done["startedAt"]
        <= done["stoppingAt"]
        <= done["stoppedAt"]
    )
    out = _log(runner, task["taskArn"])
    assert f"ARN {task['taskArn']} t " in out
    assert "GREETING override test" in out


def test_stop_task_sigterm_then_sigkill(ecs: Ecs) -> None:
    task = ecs.run(ecs.taskdef(IGNORE_TERM))
    assert ecs.wait(task["taskArn"], "RUNNING")["startedAt"]
    ecs.client.stop_task(cluster=ecs.cluster, task=task["taskArn"], reason="enough")
    done = ecs.wait(task["taskArn"])
    assert done["stopCode"] == "UserInitiated"
    assert done["stoppedReason"] == "enough"
    assert done["containers"][0]["exitCode"] == 137  # ignored SIGTERM, got SIGKILL


def test_stop_task_before_it_runs_and_unknown_task(ecs: Ecs) -> None:
    task = ecs.run(ecs.taskdef(SLEEP_FOREVER))
    ecs.client.stop_task(cluster=ecs.cluster, task=task["taskArn"], reason="early")
    done = ecs.wait(task["taskArn"])
    assert done["stopCode"] == "UserInitiated"
    with pytest.raises(ClientError, match="InvalidParameter"):
        ecs.client.stop_task(cluster=ecs.cluster, task="nope")


def test_memory_limit_kills_with_137(ecs: Ecs) -> None:
    script = "import time\nx = bytearray(300 * 1024 * 1024)\ntime.sleep(60)"
    done = ecs.wait(ecs.run(ecs.taskdef(script, memory=128))["taskArn"])
    container = done["containers"][0]
    assert container["exitCode"] == 137
    assert container["reason"] == OOM_REASON
    assert done["stopCode"] == "EssentialContainerExited"


def test_start_failure_injection(runner: Runner, ecs: Ecs) -> None:
    runner_call(
        runner.url,
        "POST",
        "faults",
        {"kind": "start_failure", "count": 2, "reason": "CannotPullContainerError: x"},
    )
    td = ecs.taskdef("print('never')")
    for _ in range(2):
        done = ecs.wait(ecs.run(td)["taskArn"])
        assert done["stopCode"] == "TaskFailedToStart"
        assert done["stoppedReason"] == "CannotPullContainerError: x"
        assert "startedAt" not in done
    assert ecs.wait(ecs.run(td)["taskArn"])["stopCode"] == "EssentialContainerExited"


def test_kill_fault_on_next_task(runner: Runner, ecs: Ecs) -> None:
    runner_call(runner.url, "POST", "faults", {"kind": "kill", "exit_code": 42})
    done = ecs.wait(ecs.run(ecs.taskdef(SLEEP_FOREVER))["taskArn"])
    assert done["containers"][0]["exitCode"] == 42
    assert done["stopCode"] == "EssentialContainerExited"


def test_spot_interruption_by_arn(runner: Runner, ecs: Ecs) -> None:
    task = ecs.run(ecs.taskdef(SLEEP_FOREVER), spot=True)
    ecs.wait(task["taskArn"], "RUNNING")
    runner_call(
        runner.url,
        "POST",
        "faults",
        {"kind": "spot_interruption", "task": task["taskArn"]},
    )
    done = ecs.wait(task["taskArn"])
    assert done["capacityProviderName"] == "FARGATE_SPOT"
    assert done["stopCode"] == "SpotInterruption"
    assert done["stoppedReason"] == SPOT_REASON
    assert done["containers"][0]["exitCode"] == 143  # SIGTERM


def test_run_task_count_over_ten_is_refused(ecs: Ecs) -> None:
    with pytest.raises(ClientError, match="InvalidParameter"):
        ecs.run(ecs.taskdef("pass"), count=11)


def test_fargate_quotas_through_boto3(runner: Runner) -> None:
    sq = boto3.client("service-quotas", endpoint_url=runner.url, **CREDS)
    on_demand = sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-3032A538")
    assert on_demand["Quota"]["Value"] == 24
    assert (
        sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-36FBB829")["Quota"][
            "Value"
        ]
        == 8
    )
    listed = sq.list_service_quotas(ServiceCode="fargate")["Quotas"]
    assert {q["QuotaCode"] for q in listed} == {"L-3032A538", "L-36FBB829"}
    with pytest.raises(sq.exceptions.NoSuchResourceException):
        sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-NOPE")
    runner_call(runner.url, "PUT", "quotas", {"on_demand": 4})
    try:
        assert (
            sq.get_service_quota(ServiceCode="fargate", QuotaCode="L-3032A538")[
                "Quota"
            ]["Value"]
            == 4
        )
    finally:
        runner_call(runner.url, "PUT", "quotas", {"on_demand": 24})


def test_runner_api_health_and_bad_fault(runner: Runner) -> None:
    with urllib.request.urlopen(f"{runner.url}/_starburst/health") as resp:
        assert json.loads(resp.read())["ok"] is True
    req = urllib.request.Request(
        f"{runner.url}/_starburst/faults", method="POST", data=b'{"kind": "meteor"}'
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 400
