"""Catalogue items 4, 5, 7, 8 and 11 end to end on the local cloud: worker
processes killed for memory, Spot interruptions, per-task timeouts, shutdown
with cancel_futures, and a client killed mid-run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import boto3
import pytest

from starburst_sdk import Plan, WorkerLostError, _cost
from starburst_sdk._session import Registry, registry_key
from starburst_worker import envelope
from starburst_worker.worker import claim_key, result_key

pytestmark = pytest.mark.cloud

SMALL = {"cpu": 0.25, "memory": "512MB"}


def slow_square(x, seconds):
    time.sleep(seconds)
    return x * x


def hog(mib):
    block = bytearray(mib * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(30)
    return len(block)


def first_claim(cloud, plan, timeout=90):
    """The first task a worker of ``plan`` claims, with that worker's ARN."""
    s3 = boto3.client("s3")
    bucket, prefix = cloud.config["bucket"], cloud.config["prefix"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in plan.registry.all():
            try:
                body = s3.get_object(
                    Bucket=bucket, Key=claim_key(prefix, plan.session_id, w.task_id)
                )["Body"].read()
            except s3.exceptions.NoSuchKey:
                continue
            held = json.loads(body)["held"][0]
            return {**held, "worker": w.arn}
        time.sleep(0.2)
    raise AssertionError("no worker claimed a task")


def result_attempt(cloud, session_id, task_id):
    data = (
        boto3.client("s3")
        .get_object(
            Bucket=cloud.config["bucket"],
            Key=result_key(cloud.config["prefix"], session_id, task_id),
        )["Body"]
        .read()
    )
    return envelope.unpack(data, "result")["attempt"]


def test_cloud_out_of_memory_every_attempt_fails_naming_memory(cloud):
    with Plan(workers=1, max_attempts=2, idle_timeout=20, **SMALL) as plan:
        exc = plan.submit(hog, 900).exception(timeout=240)
    assert isinstance(exc, WorkerLostError), repr(exc)
    text = str(exc)
    assert "exit code 137" in text and "memory=512 MiB" in text
    assert "max_attempts=2" in text
    killed = [w for w in plan.registry.all() if w.exit_code == 137]
    assert len(killed) == 2


def test_cloud_spot_interruption_redelivers_once_and_bills_both(cloud):
    with Plan(workers=1, spot=True, idle_timeout=20, **SMALL) as plan:
        futures = [plan.submit(slow_square, i, 2) for i in range(2)]
        claim = first_claim(cloud, plan)
        cloud.spot_interrupt(task=claim["worker"])
        assert [f.result(timeout=180) for f in futures] == [0, 1]
        status = plan.status()
    assert status.completed == 2 and status.failed == 0
    workers = plan.registry.all()
    interrupted = next(w for w in workers if w.arn == claim["worker"])
    assert interrupted.stop_code == "SpotInterruption"
    assert len(workers) >= 2  # a new worker finished the interrupted task
    assert result_attempt(cloud, plan.session_id, claim["task_id"]) == 2
    report = plan.cost_report()
    billed = {w.arn for w in report.workers}
    assert billed == {w.arn for w in workers}  # both attempts' workers are billed
    assert all(w.capacity_provider == "FARGATE_SPOT" for w in report.workers)
    assert report.total == pytest.approx(sum(w.dollars for w in report.workers))
    assert report.total > _cost.session_cost(plan.registry).workers[0].dollars


def test_cloud_task_timeout_raises_timeout_error_and_the_worker_goes_on(cloud):
    with Plan(workers=1, timeout=2, idle_timeout=20, **SMALL) as plan:
        t0 = time.monotonic()
        slow = plan.submit(slow_square, 3, 60)
        quick = plan.submit(slow_square, 4, 0)
        exc = slow.exception(timeout=120)
        assert quick.result(timeout=120) == 16
    assert isinstance(exc, TimeoutError) and "ran past Plan(timeout=2 s)" in str(exc)
    assert time.monotonic() - t0 < 90
    assert len(plan.registry.all()) == 1  # the same worker ran the next task


def test_cloud_shutdown_cancel_futures_stops_every_worker(cloud):
    plan = Plan(workers=2, idle_timeout=60, **SMALL)
    futures = [plan.submit(slow_square, i, 1) for i in range(40)]
    first_claim(cloud, plan)
    plan.shutdown(wait=True, cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    assert len(cancelled) >= 30
    assert all(f.done() for f in futures)
    for i, f in enumerate(futures):
        assert f.cancelled() or f.result(timeout=0) == i * i
    ecs = boto3.client("ecs")
    arns = [w.arn for w in plan.registry.all()]
    tasks = ecs.describe_tasks(cluster=cloud.config["cluster"], tasks=arns)["tasks"]
    assert tasks and all(t["desiredStatus"] == "STOPPED" for t in tasks)


def client_script(*, idle_timeout: float, seconds: float, calls: int, then: str) -> str:
    """A client that submits ``calls`` calls sleeping ``seconds``, prints its
    session id, runs ``then`` (one line), prints "ready" and waits to be
    stopped by the test."""
    return textwrap.dedent(f"""
        import time
        from starburst_sdk import Plan

        def slow_square(x, seconds):
            time.sleep(seconds)
            return x * x

        plan = Plan(workers=2, cpu=0.25, memory="512MB", idle_timeout={idle_timeout})
        futures = [plan.submit(slow_square, i, {seconds}) for i in range({calls})]
        print(plan.session_id, flush=True)
        {then}
        print("ready", flush=True)
        time.sleep(600)  # stopped here, mid-run
    """)


CLIENT = client_script(
    idle_timeout=5, seconds=1.0, calls=4, then="futures[0].result(timeout=120)"
)


@pytest.mark.slow
def test_cloud_client_killed_workers_idle_out_and_attach_collects(cloud):
    s3, ecs = boto3.client("s3"), boto3.client("ecs")
    cfg = cloud.config
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        sid = child.stdout.readline().strip()
        assert sid, "the client printed no session id"
        key = registry_key(cfg["prefix"], sid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the registry lists the tasks sent
            try:
                reg = Registry.from_json(
                    s3.get_object(Bucket=cfg["bucket"], Key=key)["Body"].read()
                )
                if sum(reg.task_sizes) == 4 and reg.all():
                    break
            except s3.exceptions.NoSuchKey:
                pass
            time.sleep(0.5)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    killed_at = time.monotonic()
    assert sum(reg.task_sizes) == 4, reg.task_sizes
    # No client: the workers finish what was sent, then exit after idle_timeout.
    arns = [w.arn for w in reg.all()]
    while time.monotonic() - killed_at < 90:
        tasks = ecs.describe_tasks(cluster=cfg["cluster"], tasks=arns)["tasks"]
        if all(t["lastStatus"] == "STOPPED" for t in tasks):
            break
        time.sleep(0.5)
    assert all(t["lastStatus"] == "STOPPED" for t in tasks)
    assert all(t["containers"][0].get("exitCode") == 0 for t in tasks)
    assert time.monotonic() - killed_at < 4 * 1.0 + 5 + 30
    with Plan.attach(sid) as plan:
        values = [f.result(timeout=60) for f in plan.futures]
    assert values == [0, 1, 4, 9]


TERMINATED = client_script(
    idle_timeout=120,
    seconds=30.0,
    calls=6,
    then="while not plan.registry.alive(): time.sleep(0.1)",
)


def test_cloud_client_terminated_stops_its_workers_and_queues(cloud):
    ecs, sqs = boto3.client("ecs"), boto3.client("sqs")
    cfg = cloud.config
    child = subprocess.Popen(
        [sys.executable, "-c", TERMINATED],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        sid = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "ready"  # workers launched
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    queues = sqs.list_queues(QueueNamePrefix=f"{cfg['queue_prefix']}-{sid}")
    assert queues.get("QueueUrls", []) == []
    live = ecs.list_tasks(cluster=cfg["cluster"], desiredStatus="RUNNING")["taskArns"]
    tasks = (
        ecs.describe_tasks(cluster=cfg["cluster"], tasks=live)["tasks"] if live else []
    )
    assert not [t for t in tasks if t.get("startedBy") == f"starburst-{sid}"]


WAITING = textwrap.dedent("""
    import signal, time
    from starburst_sdk import Plan

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited off

    def slow_square(x, seconds):
        time.sleep(seconds)
        return x * x

    with Plan(workers=2, cpu=0.25, memory="512MB", idle_timeout=120) as plan:
        futures = [plan.submit(slow_square, i, 30.0) for i in range(6)]
        print(plan.session_id, flush=True)
        while not plan.registry.alive():
            time.sleep(0.1)
        print("ready", flush=True)
    # leaving the block: shutdown(wait=True) waits for the calls, and is stopped
""")


@pytest.mark.parametrize(
    "signum, times",
    [(signal.SIGINT, 1), (signal.SIGINT, 2), (signal.SIGTERM, 1)],
    ids=["ctrl-c", "ctrl-c-twice", "sigterm"],
)
def test_cloud_signal_while_the_with_block_waits_stops_everything(cloud, signum, times):
    ecs, s3, sqs = boto3.client("ecs"), boto3.client("s3"), boto3.client("sqs")
    cfg = cloud.config
    child = subprocess.Popen(
        [sys.executable, "-c", WAITING],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sid = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # in shutdown(wait=True) by now
        for _ in range(times):
            child.send_signal(signum)
            time.sleep(0.5)
        child.wait(timeout=60)  # not the 30 s calls, nor the 120 s idle timeout
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    reg = Registry.from_json(
        s3.get_object(Bucket=cfg["bucket"], Key=registry_key(cfg["prefix"], sid))[
            "Body"
        ].read()
    )
    assert reg.state == "aborted", child.stderr.read()[-3000:]
    queues = sqs.list_queues(QueueNamePrefix=f"{cfg['queue_prefix']}-{sid}")
    assert queues.get("QueueUrls", []) == []
    arns = [w.arn for w in reg.all()]
    assert arns
    tasks = ecs.describe_tasks(cluster=cfg["cluster"], tasks=arns)["tasks"]
    assert tasks and all(t["desiredStatus"] == "STOPPED" for t in tasks)
