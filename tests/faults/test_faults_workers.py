"""Catalogue items 3, 4 and 9, with the test playing Fargate (``Puppet``): a
worker that never starts, one killed for memory, one that stops cleanly
without its result."""

import json
import time

import boto3
import pytest

from starburst_sdk import Plan, ResultMissingError, WorkerLostError, _plan
from starburst_worker import envelope
from starburst_worker.worker import claim_key, result_key

from .faultkit import OOM_REASON, REGION, Puppet, settings_of

PULL_ERROR = (
    "CannotPullContainerError: pull image manifest has been retried 5 "
    "time(s): failed to resolve ref 123.dkr.ecr.us-east-1.amazonaws.com/sb:x"
)


def square(x):
    return x * x


def test_worker_failing_to_start_fails_futures_promptly_with_reason_and_hint(
    puppet_cloud,
):
    _, fargate = puppet_cloud

    def fail_start(p, task):
        Puppet.stop(
            task,
            exit_code=None,
            stop_code="TaskFailedToStart",
            reason=PULL_ERROR,
            started=False,
        )

    puppet = Puppet(fargate, fail_start)
    t0 = time.monotonic()
    try:
        with Plan(workers=2, max_attempts=3, idle_timeout=1) as plan:
            futures = [plan.submit(square, i) for i in range(3)]
            errors = [f.exception(timeout=60) for f in futures]
    finally:
        puppet.close()
    elapsed = time.monotonic() - t0
    for exc in errors:
        assert isinstance(exc, WorkerLostError)
        assert "CannotPullContainerError" in str(exc)
        assert "public IP" in str(exc) and "ECR" in str(exc)  # the hint
    assert elapsed < 30  # a few backoffs, never a visibility or task timeout
    assert 3 <= len(puppet.seen) <= 4  # retried, then gave up


def test_worker_out_of_memory_is_retried_then_succeeds(puppet_cloud):
    _, fargate = puppet_cloud

    def oom_once(p, task):
        if len(p.seen) == 1:
            p.hold(task)
            Puppet.stop(task, exit_code=137, container_reason=OOM_REASON)
        else:
            p.run_worker(task)

    puppet = Puppet(fargate, oom_once)
    try:
        with Plan(workers=1, max_attempts=3, idle_timeout=1) as plan:
            value = plan.submit(square, 9).result(timeout=60)
    finally:
        puppet.close()
    assert value == 81 and not puppet.errors
    killed, retried = (plan.registry.workers[a] for a in puppet.seen[:2])
    assert killed.exit_code == 137 and retried.exit_code == 0
    cfg = plan.config
    data = (
        boto3.client("s3", region_name=REGION)
        .get_object(
            Bucket=cfg.bucket,
            Key=result_key(cfg.prefix, plan.session_id, "00000001"),
        )["Body"]
        .read()
    )
    assert envelope.unpack(data, "result")["attempt"] == 2


def test_worker_lost_charges_an_attempt_only_to_the_task_it_ran(puppet_cloud):
    _, fargate = puppet_cloud

    def first_dies_running_one_holding_two(p, task):
        if len(p.seen) == 1:
            p.hold_many(task, 2)  # ran the first, had fetched the second
            Puppet.stop(task, exit_code=137, container_reason=OOM_REASON)
        else:
            Puppet.run_worker(task)

    puppet = Puppet(fargate, first_dies_running_one_holding_two)
    try:
        with Plan(workers=1, chunksize=1, max_attempts=1, idle_timeout=1) as plan:
            ran, fetched = plan.submit(square, 2), plan.submit(square, 3)
            assert isinstance(ran.exception(timeout=60), WorkerLostError)
            assert fetched.result(timeout=60) == 9
    finally:
        puppet.close()
    assert not puppet.errors


def _always_oom(p, task):
    """Every worker is killed for memory while it runs its task."""
    p.hold(task)
    Puppet.stop(task, exit_code=137, container_reason=OOM_REASON)


def test_worker_out_of_memory_every_attempt_names_the_memory_setting(puppet_cloud):
    _, fargate = puppet_cloud

    puppet = Puppet(fargate, _always_oom)
    t0 = time.monotonic()
    try:
        with Plan(
            workers=1, cpu=0.5, memory="1GB", max_attempts=2, idle_timeout=1
        ) as plan:
            exc = plan.submit(square, 9).exception(timeout=60)
    finally:
        puppet.close()
    assert isinstance(exc, WorkerLostError)
    text = str(exc)
    assert "2 time(s)" in text and "max_attempts=2" in text
    assert "OutOfMemory" in text and "exit code 137" in text
    assert "memory=1024 MiB" in text and "Plan(memory=...)" in text
    assert len(puppet.seen) == 2  # one worker per attempt, no more
    assert time.monotonic() - t0 < 30  # released at once, not after visibility


def test_worker_lost_with_a_batch_of_calls_says_they_fail_together(puppet_cloud):
    _, fargate = puppet_cloud

    puppet = Puppet(fargate, _always_oom)
    try:
        with Plan(workers=1, max_attempts=1, idle_timeout=1, chunksize=3) as plan:
            futures = [plan.submit(square, i) for i in range(3)]
            errors = [f.exception(timeout=60) for f in futures]
    finally:
        puppet.close()
    assert all(isinstance(e, WorkerLostError) for e in errors)
    text = str(errors[0])
    assert "one of 3 calls of" in text and "square" in text
    assert "chunksize=1" in text and "OutOfMemory" in text


@pytest.mark.parametrize("announce", [True, False], ids=["announced", "silent"])
def test_result_missing_after_clean_stop_fails_naming_task_and_key(
    puppet_cloud, monkeypatch, announce
):
    _, fargate = puppet_cloud
    monkeypatch.setattr(_plan, "RESULT_GRACE", 1.0)

    def lose_result(p, task):
        held = p.hold(task)
        s = settings_of(task)
        sqs = boto3.client("sqs", region_name=REGION)
        if announce:
            sqs.send_message(QueueUrl=s.done_queue_url, MessageBody=held["task_id"])
        sqs.delete_message(QueueUrl=s.queue_url, ReceiptHandle=held["receipt"])
        Puppet.stop(task, exit_code=0)

    puppet = Puppet(fargate, lose_result)
    try:
        with Plan(workers=1, idle_timeout=1) as plan:
            t0 = time.monotonic()
            exc = plan.submit(square, 2).exception(timeout=60)
            waited = time.monotonic() - t0
    finally:
        puppet.close()
    assert isinstance(exc, ResultMissingError), repr(exc)
    key = result_key(plan.config.prefix, plan.session_id, "00000001")
    assert "task 00000001" in str(exc) and key in str(exc)
    assert waited < 20


def test_stop_description_says_memory_only_when_ecs_does():
    from starburst_sdk._plan import _stop_description
    from starburst_sdk._session import WorkerRecord

    def stopped(**kw):
        return WorkerRecord("arn:aws:ecs:t/c/w1", 0.0, 1, status="STOPPED", **kw)

    killed = _stop_description(
        stopped(exit_code=137, stop_code="EssentialContainerExited"), 2048
    )
    assert "SIGKILL" in killed and "memory=" not in killed
    oom = _stop_description(stopped(exit_code=137, reason=OOM_REASON), 2048)
    assert "memory=2048 MiB" in oom
    spot = _stop_description(stopped(exit_code=137, stop_code="SpotInterruption"), 2048)
    assert "Spot" in spot and "memory=" not in spot


@pytest.mark.parametrize(
    "code, says",
    [
        (139, "SIGSEGV"),
        (134, "SIGABRT"),
        (143, "SIGTERM"),
        (130, "SIGINT"),
        (5, "exited with code 5 while running a call"),
        (1, "starburst-cli logs 20261204-sid --worker w1"),
    ],
)
def test_stop_description_explains_the_exit_code(code, says):
    from starburst_sdk._plan import _stop_description
    from starburst_sdk._session import WorkerRecord

    worker = WorkerRecord(
        "arn:aws:ecs:t/c/w1",
        0.0,
        1,
        status="STOPPED",
        exit_code=code,
        stop_code="EssentialContainerExited",
    )
    text = _stop_description(worker, 2048, "20261204-sid")
    assert f"exit code {code} (" in text and says in text
    assert "memory" not in text


def test_worker_killed_before_its_claim_says_running_charges_the_first(puppet_cloud):
    _, fargate = puppet_cloud

    def dies_at_once(p, task):
        held = p.hold_many(task, 1)  # its claim still marks nothing running
        assert held[0]["running"] is True
        s = settings_of(task)
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=s.bucket,
            Key=claim_key(s.prefix, s.session, task.task_arn.rsplit("/", 1)[-1]),
            Body=json.dumps(
                {"worker": task.task_arn, "held": [{**held[0], "running": False}]}
            ).encode(),
        )
        Puppet.stop(task, exit_code=137, container_reason=OOM_REASON)

    puppet = Puppet(fargate, dies_at_once)
    try:
        with Plan(workers=1, max_attempts=2, idle_timeout=1) as plan:
            exc = plan.submit(square, 9).exception(timeout=60)
    finally:
        puppet.close()
    assert isinstance(exc, WorkerLostError) and "2 time(s)" in str(exc)
    assert len(puppet.seen) == 2  # one worker per attempt, no more
