"""Money and sessions on the local cloud: the max_cost guard stops launching and
stops its workers; a detached session is collected from a second process; and
plan.cost() equals what session.json says."""

import json
import os
import subprocess
import sys
import textwrap
import time

import boto3
import pytest
from typer.testing import CliRunner

from starburst_cli.main import app as cli_app
from starburst_sdk import BudgetExceededError, Plan, _cost
from starburst_sdk._session import Registry, registry_key

pytestmark = pytest.mark.cloud

SMALL = {"cpu": 0.25, "memory": "512MB"}


def square(x):
    return x * x


def slow_square(x, seconds):
    time.sleep(seconds)
    return x * x


def session_registry(cloud, session_id):
    body = (
        boto3.client("s3")
        .get_object(
            Bucket=cloud.config["bucket"],
            Key=registry_key(cloud.config["prefix"], session_id),
        )["Body"]
        .read()
    )
    return Registry.from_json(body)


def wait_all_stopped(cloud, arns, timeout=60):
    ecs = boto3.client("ecs")
    deadline = time.monotonic() + timeout
    while True:
        tasks = ecs.describe_tasks(cluster=cloud.config["cluster"], tasks=arns)["tasks"]
        if (
            all(t["lastStatus"] == "STOPPED" for t in tasks)
            or time.monotonic() > deadline
        ):
            return tasks
        time.sleep(0.5)


@pytest.mark.slow
def test_cloud_budget_stops_launching_and_stops_workers(cloud):
    # One worker-minute of 0.25 vCPU / 0.5 GB is about $0.000206; the budget
    # allows one worker (not two) and runs out about 5 s past its minute.
    minute = 60 * _cost.rate("us-east-1").per_second(0.25, 0.5)
    budget = 1.1 * minute
    t0 = time.monotonic()
    with Plan(workers=3, idle_timeout=120, max_cost=budget, **SMALL) as plan:
        fs = [plan.submit(slow_square, i, 1.0) for i in range(200)]
        outcomes = []
        for f in fs:
            try:
                outcomes.append(f.result(timeout=180))
            except BudgetExceededError as exc:
                outcomes.append(exc)
    elapsed = time.monotonic() - t0
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    failed = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert done and failed and len(done) + len(failed) == 200
    assert done == [i * i for i in range(len(done))]
    assert "max_cost" in str(failed[0])
    arns = [w.arn for w in plan.registry.all()]
    assert len(arns) == 1  # the budget held back the other two workers
    tasks = wait_all_stopped(cloud, arns)
    assert len(tasks) == 1 and tasks[0]["lastStatus"] == "STOPPED"
    cost = plan.cost()
    assert cost <= budget * 1.05, (cost, budget)
    final = session_registry(cloud, plan.session_id)
    assert final.state == "over budget"
    assert cost == _cost.session_cost(final).total
    status = CliRunner().invoke(cli_app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    assert plan.session_id not in [
        s["session_id"] for s in json.loads(status.stdout)["sessions"]
    ]
    assert plan.session_id not in CliRunner().invoke(cli_app, ["status"]).stdout
    print(
        f"budget ${budget:.6f}, cost ${cost:.6f}, {len(done)} done, "
        f"{len(failed)} failed, {elapsed:.1f} s"
    )


ATTACH = textwrap.dedent("""
    import json, sys
    from starburst_sdk import Plan
    with Plan.attach(sys.argv[1]) as plan:
        values = [f.result(timeout=120) for f in plan.futures]
        arns = [w.arn for w in plan.registry.all()]
    print(json.dumps({"values": values, "arns": arns, "cost": plan.cost()}))
""")


def test_cloud_detached_session_is_collected_from_another_process(cloud):
    t0 = time.monotonic()
    with Plan(workers=2, idle_timeout=20, detach=True, **SMALL) as plan:
        plan.submit(square, 100)
        plan.map(slow_square, range(9), [0.2] * 9, chunksize=2)
    detached_in = time.monotonic() - t0
    sid = plan.session_id
    reg = session_registry(cloud, sid)
    assert reg.state == "detached"
    assert [n for _, n in zip(reg.task_ids, reg.task_sizes, strict=True)] == [
        1,
        2,
        2,
        2,
        2,
        1,
    ]
    assert any(w.alive for w in reg.all())  # left running for the attach
    out = subprocess.run(
        [sys.executable, "-c", ATTACH, sid],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["values"] == [10_000] + [x * x for x in range(9)]
    final = session_registry(cloud, sid)
    assert final.state == "ended"
    tasks = wait_all_stopped(cloud, doc["arns"])
    assert tasks and all(t["lastStatus"] == "STOPPED" for t in tasks)
    queue = f"{cloud.config['queue_prefix']}-{sid}"
    sqs = boto3.client("sqs")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=queue)
    assert doc["cost"] == pytest.approx(_cost.session_cost(final).total, rel=1e-9)
    print(f"detached in {detached_in:.1f} s, cost ${doc['cost']:.6f}")


def test_cloud_plan_cost_matches_session_json(cloud):
    with Plan(workers=2, idle_timeout=30, spot=True, **SMALL) as plan:
        assert list(plan.map(square, range(10))) == [x * x for x in range(10)]
    reg = session_registry(cloud, plan.session_id)
    assert all(w.capacity_provider == "FARGATE_SPOT" for w in reg.all())
    assert reg.settings["capacity_provider"] == "FARGATE_SPOT"
    report = _cost.session_cost(reg)
    assert not report.estimated
    assert plan.cost() == report.total > 0
