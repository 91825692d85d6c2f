"""Plan's money and session options on the in-process fake cloud: spot, arch,
max_cost, detach and attach, and cost() against session.json."""

import json
import time

import boto3
import pytest

from starburst_sdk import Plan, SessionNotFoundError, _cost
from starburst_sdk._session import Registry, registry_key


def square(x):
    return x * x


def session_json(plan):
    cfg = plan.config
    body = boto3.client("s3").get_object(
        Bucket=cfg.bucket, Key=registry_key(cfg.prefix, plan.session_id)
    )["Body"]
    return body.read()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"spot": "yes"}, TypeError),
        ({"detach": 1}, TypeError),
        ({"arch": "arm"}, ValueError),
        ({"max_cost": 0}, ValueError),
        ({"max_cost": "5"}, TypeError),
        ({"max_cost": 1.0, "region": "xx-nowhere-9"}, "region's price"),
    ],
)
def test_plan_checks_money_arguments(aws_env, kwargs, error):
    if isinstance(error, str):
        with pytest.raises(ValueError, match=error):
            Plan(**kwargs)
    else:
        with pytest.raises(error):
            Plan(**kwargs)


def test_plan_spot_and_arm_reach_ecs_and_the_registry(fake):
    with Plan(workers=1, idle_timeout=2, spot=True, arch="arm64") as plan:
        assert plan.submit(square, 3).result(timeout=60) == 9
    ecs = boto3.client("ecs")
    arn = plan.registry.all()[0].arn
    task = ecs.describe_tasks(cluster=plan.config.cluster, tasks=[arn])["tasks"][0]
    td = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    assert td["taskDefinition"]["runtimePlatform"]["cpuArchitecture"] == "ARM64"
    assert plan.registry.settings["arch"] == "arm64"
    assert plan.registry.settings["capacity_provider"] == "FARGATE_SPOT"
    assert plan.registry.all()[0].capacity_provider == "FARGATE_SPOT"


def test_plan_budget_below_one_worker_minute_is_refused(fake):
    minute = 60 * _cost.rate("us-east-1").per_second(1, 2)
    with pytest.raises(ValueError, match=r"one-minute minimum \(\$0\.000"):
        Plan(workers=2, max_cost=0.9 * minute)
    assert boto3.client("sqs").list_queues().get("QueueUrls", []) == []


def test_detached_budget_gives_each_worker_a_deadline(fake):
    _, fargate = fake
    per_second = _cost.rate("us-east-1").per_second(1, 2)
    budget = 2 * 300 * per_second  # five minutes for each of two workers
    launched = time.time()
    with Plan(workers=2, idle_timeout=2, max_cost=budget, detach=True) as plan:
        plan.map(square, range(4), chunksize=1)
    deadlines = [
        float(e["value"])
        for task in fargate.tasks()
        for o in task.overrides["containerOverrides"]
        for e in o["environment"]
        if e["name"] == "STARBURST_STOP_AT"
    ]
    # Each worker's share, less the margin for the call it runs and the stop.
    assert len(deadlines) == 2
    for stop_at in deadlines:
        assert stop_at - launched == pytest.approx(300 - 4, abs=2)
    with Plan.attach(plan.session_id) as attached:
        assert [f.result(timeout=60) for f in attached.futures] == [0, 1, 4, 9]


def test_plan_budget_limits_how_many_workers_start(fake):
    minute = 60 * _cost.rate("us-east-1").per_second(1, 2)
    with Plan(workers=4, idle_timeout=2, max_cost=2.5 * minute) as plan:
        assert list(plan.map(square, range(8), chunksize=1)) == [
            x * x for x in range(8)
        ]
    assert len(plan.registry.all()) == 2


def test_plan_cost_matches_the_session_json_after_shutdown(fake):
    with Plan(workers=2, idle_timeout=2) as plan:
        assert list(plan.map(square, range(6), chunksize=1)) == [
            x * x for x in range(6)
        ]
        plan._monitor()  # record the start times, as the engine would
    again = Registry.from_json(session_json(plan))
    assert plan.cost() == _cost.session_cost(again).total > 0


def test_attach_unknown_session_is_a_clear_error(fake):
    with pytest.raises(SessionNotFoundError, match="no starburst session 'nope'"):
        Plan.attach("nope")


def test_detached_session_is_collected_by_attach(fake):
    with Plan(workers=2, idle_timeout=5, detach=True) as plan:
        plan.submit(square, 100)
        plan.map(square, range(7), chunksize=3)
    sid = plan.session_id
    doc = json.loads(session_json(plan))
    assert doc["state"] == "detached"
    assert [n for _, n in doc["tasks"]] == [1, 3, 3, 1]
    queue = f"{plan.config.queue_prefix}-{sid}"
    boto3.client("sqs").get_queue_url(QueueName=queue)  # left behind
    with Plan.attach(sid) as attached:
        values = [f.result(timeout=60) for f in attached.futures]
    assert values == [10_000] + [x * x for x in range(7)]
    with pytest.raises(boto3.client("sqs").exceptions.QueueDoesNotExist):
        boto3.client("sqs").get_queue_url(QueueName=queue)
    assert json.loads(session_json(plan))["state"] == "ended"
    assert not attached.registry.alive()


def slow_square(x):
    time.sleep(0.5)
    return x * x


def ecs_states(plan):
    arns = [w.arn for w in plan.registry.all()]
    tasks = boto3.client("ecs").describe_tasks(cluster=plan.config.cluster, tasks=arns)
    return {t["lastStatus"] for t in tasks["tasks"]}


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_attacher_interrupted_leaves_the_detached_session_running(fake, interrupt):
    with Plan(workers=1, idle_timeout=30, detach=True) as plan:
        plan.map(slow_square, range(6), chunksize=1)
    sid = plan.session_id
    queue = f"{plan.config.queue_prefix}-{sid}"
    with pytest.raises(interrupt), Plan.attach(sid) as attached:
        attached.futures[0].result(timeout=60)
        raise interrupt()  # Ctrl-C, or an error, while watching the session
    left = [f.exception() for f in attached.futures if f.exception()]
    assert left and all("still detached" in str(e) for e in left)
    assert f"Plan.attach({sid!r})" in str(left[0])
    assert json.loads(session_json(plan))["state"] == "detached"
    boto3.client("sqs").get_queue_url(QueueName=queue)  # not deleted
    assert "STOPPED" not in ecs_states(attached)  # its worker goes on
    with Plan.attach(sid) as again:
        values = [f.result(timeout=60) for f in again.futures]
    assert values == [x * x for x in range(6)]
    assert json.loads(session_json(plan))["state"] == "ended"


def test_attach_to_an_aborted_session_says_why_its_queue_is_gone(fake):
    with pytest.raises(RuntimeError), Plan(workers=1, idle_timeout=30) as plan:
        for _ in range(4):
            plan.submit(time.sleep, 5)
        deadline = time.monotonic() + 30
        while not plan.registry.task_ids and time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError("the user's code failed")  # while the first runs
    assert json.loads(session_json(plan))["state"] == "aborted"
    with Plan.attach(plan.session_id) as attached:
        errors = [f.exception(timeout=60) for f in attached.futures]
    assert errors and all("was aborted" in str(e) for e in errors)
    assert json.loads(session_json(plan))["state"] == "aborted"  # still


def test_attach_finds_tasks_sent_after_the_last_checkpoint(fake):
    with Plan(workers=2, idle_timeout=5, detach=True) as plan:
        plan.map(square, range(6), chunksize=2)
    cfg, sid = plan.config, plan.session_id
    # As if the client died before session.json listed its last two tasks.
    doc = json.loads(session_json(plan))
    doc["tasks"] = doc["tasks"][:1]
    doc["state"] = "running"
    boto3.client("s3").put_object(
        Bucket=cfg.bucket,
        Key=registry_key(cfg.prefix, sid),
        Body=json.dumps(doc).encode(),
    )
    with Plan.attach(sid) as attached:
        values = [f.result(timeout=60) for f in attached.futures]
    assert values == [x * x for x in range(6)]


def test_a_process_forked_while_a_plan_runs_exits_without_waiting_for_it(fake):
    import multiprocessing

    with Plan(workers=1, idle_timeout=5) as plan:
        assert plan.submit(square, 2).result(timeout=60) == 4
        child = multiprocessing.get_context("fork").Process(target=square, args=(3,))
        child.start()
        child.join(timeout=30)
        if child.is_alive():  # it waited at exit for the plan's threads
            child.kill()
            child.join()
        assert child.exitcode == 0
