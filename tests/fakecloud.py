"""An in-process stand-in for AWS: moto for every service, and worker loops run
as threads when RunTask starts a task. Unit tests use it; nothing leaves the
process and no server is started."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecs.models import ecs_backends
from moto.moto_api import state_manager

from starburst_sdk._config import CONFIG_VERSION, parameter_name
from starburst_worker import worker as worker_mod

REGION = "us-east-1"

#: Tests' functions may wait on this (the workers are threads of the test
#: process); import it inside the function, at run time.
GATE = threading.Event()


def make_deployment(deployment: str = "default") -> dict[str, Any]:
    """Create what Terraform would: bucket, cluster, network, roles, config."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto's RunTask needs DNS host names on the VPC (so does a real VPC's ENI).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="sb", Description="sb", VpcId=vpc)[
        "GroupId"
    ]
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="sb-bucket")
    boto3.client("ecs", region_name=REGION).create_cluster(clusterName="sb-cluster")
    doc = {
        "version": CONFIG_VERSION,
        "deployment": deployment,
        "region": REGION,
        "bucket": "sb-bucket",
        "prefix": "starburst/",
        "cluster": "sb-cluster",
        "subnets": [subnet],
        "security_groups": [sg],
        "assign_public_ip": True,
        "execution_role_arn": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/sb-exec",
        "task_role_arn": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/sb-task",
        "log_group": "/starburst/default",
        "ecr_repository_url": f"{DEFAULT_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/sb",
        "queue_prefix": f"starburst-{deployment}",
        "worker_image": f"{DEFAULT_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/sb:test",
    }
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=parameter_name(deployment), Value=json.dumps(doc), Type="String"
    )
    return doc


class ThreadFargate:
    """Runs each task RunTask creates as a worker thread, then marks it STOPPED."""

    def __init__(self, run_workers: bool = True) -> None:
        self.run_workers = run_workers
        self.seen: set[str] = set()
        self.threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> ThreadFargate:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for t in self.threads:
            t.join(timeout=30)

    def tasks(self) -> list[Any]:
        backend = ecs_backends[DEFAULT_ACCOUNT_ID][REGION]
        return [
            t
            for cluster in list(backend.tasks.values())
            for t in list(cluster.values())
        ]

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            for task in self.tasks():
                if task.task_arn in self.seen:
                    continue
                self.seen.add(task.task_arn)
                task.started_at = datetime.now(UTC)
                if self.run_workers:
                    t = threading.Thread(target=self._run, args=(task,), daemon=True)
                    self.threads.append(t)
                    t.start()

    def _run(self, task: Any) -> None:
        env = {
            e["name"]: e["value"]
            for o in task.overrides.get("containerOverrides", [])
            for e in o.get("environment", [])
        }
        settings = worker_mod.Settings.from_env(env)
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        # moto keeps long-polling a queue deleted under it; short polls let a
        # worker notice the session ended within a second, as on AWS.
        sqs.meta.events.register(
            "provide-client-params.sqs.ReceiveMessage", _short_poll
        )
        code = 0
        try:
            worker_mod.Worker(
                settings, s3, sqs, task.task_arn, task.task_arn.rsplit("/", 1)[-1]
            ).run()
        except Exception:
            code = 1
        task.last_status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stopped_at = datetime.now(UTC)
        task.containers[0].exit_code = code


def _short_poll(params: dict[str, Any], **kwargs: Any) -> None:
    params["WaitTimeSeconds"] = min(1, params.get("WaitTimeSeconds", 0))


@contextmanager
def fake_cloud(run_workers: bool = True):
    with mock_aws():
        state_manager.set_transition(
            model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
        )
        doc = make_deployment()
        fargate = ThreadFargate(run_workers).start()
        try:
            yield doc, fargate
        finally:
            fargate.stop()
            time.sleep(0)
