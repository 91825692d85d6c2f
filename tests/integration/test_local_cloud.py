"""The whole Fargate path on the local cloud: S3, SQS, ECS RunTask, worker
processes, results."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import as_completed
from pathlib import Path

import boto3
import pytest

from starburst_sdk import Plan
from starburst_worker import envelope
from starburst_worker.worker import claim_key, result_key

pytestmark = pytest.mark.cloud

SMALL = {"cpu": 0.25, "memory": "512MB"}


def square(x):
    return x * x


def slow_square(x, seconds):
    time.sleep(seconds)
    return x * x


class Boom(Exception):
    pass


def explode(x):
    raise Boom(f"bad {x}")


def test_cloud_runs_200_tasks_on_8_workers_in_order(cloud):
    with Plan(workers=8, idle_timeout=30, **SMALL) as plan:
        out = list(plan.map(square, range(200), chunksize=1))
        status = plan.status()
    assert out == [x * x for x in range(200)]
    assert len(plan.registry.all()) == 8
    assert status.completed == 200 and status.failed == 0


def test_cloud_as_completed_exception_and_unpicklable(cloud):
    with Plan(workers=2, idle_timeout=30, **SMALL) as plan:
        fs = [plan.submit(square, i) for i in range(6)]
        bad = plan.submit(explode, 7)
        with pytest.raises(TypeError, match="_thread.lock"):
            plan.submit(square, threading.Lock())
        done = list(as_completed(fs + [bad], timeout=120))
    assert len(done) == 7
    assert sorted(f.result() for f in fs) == [i * i for i in range(6)]
    with pytest.raises(Boom, match="bad 7") as info:
        bad.result()
    assert "explode" in str(info.value.__cause__)


def test_cloud_worker_killed_mid_task_is_redelivered_once(cloud):
    s3 = boto3.client("s3")
    bucket, prefix = cloud.config["bucket"], cloud.config["prefix"]
    with Plan(workers=2, max_attempts=3, idle_timeout=30, **SMALL) as plan:
        fs = [plan.submit(slow_square, i, 3) for i in range(4)]
        claim = None
        deadline = time.monotonic() + 90
        while claim is None and time.monotonic() < deadline:
            for w in plan.registry.all():
                try:
                    body = s3.get_object(
                        Bucket=bucket, Key=claim_key(prefix, plan.session_id, w.task_id)
                    )["Body"].read()
                except s3.exceptions.NoSuchKey:
                    continue
                claim = json.loads(body)["held"][0]
                claim["worker"] = w.arn
                break
            time.sleep(0.2)
        assert claim is not None, "no worker claimed a task"
        cloud.kill_task(task=claim["worker"], exit_code=137)
        results = [f.result(timeout=180) for f in fs]
        status = plan.status()
    assert results == [0, 1, 4, 9]
    assert status.completed == 4 and status.failed == 0
    killed = next(w for w in plan.registry.all() if w.arn == claim["worker"])
    assert killed.exit_code == 137
    data = s3.get_object(
        Bucket=bucket, Key=result_key(prefix, plan.session_id, claim["task_id"])
    )["Body"].read()
    assert envelope.unpack(data, "result")["attempt"] == 2


def test_cloud_shutdown_leaves_no_queue_or_worker(cloud):
    with Plan(workers=3, idle_timeout=60, **SMALL) as plan:
        assert list(plan.map(square, range(30))) == [x * x for x in range(30)]
        queue_name = f"{cloud.config['queue_prefix']}-{plan.session_id}"
    sqs = boto3.client("sqs")
    for name in (queue_name, queue_name + "-dlq"):
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            sqs.get_queue_url(QueueName=name)
    ecs = boto3.client("ecs")
    arns = [w.arn for w in plan.registry.all()]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = ecs.describe_tasks(cluster=cloud.config["cluster"], tasks=arns)["tasks"]
        if all(t["lastStatus"] == "STOPPED" for t in tasks):
            break
        time.sleep(0.5)
    assert len(tasks) == len(arns) and all(t["lastStatus"] == "STOPPED" for t in tasks)


def test_cloud_example_job_verifies_its_answer(cloud):
    """The demo's job (smaller): its answer from the workers matches a serial run."""
    script = Path(__file__).parents[2] / "examples" / "bootstrap_diabetes.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--replicates", "60", "--workers", "3"],
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "verified: all 60 refits match the serial run" in proc.stdout
    assert "95% bootstrap confidence intervals" in proc.stdout
