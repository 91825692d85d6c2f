"""ECS and the session's cloud state, through moto (directly or in the fake cloud)."""

import json
import threading

import boto3
import pytest
from moto import mock_aws

from starburst_sdk import Plan, _ecs
from starburst_sdk._config import load_config
from starburst_sdk._resources import task_size
from starburst_sdk._session import Registry, registry_key

REGION = "us-east-1"


def square(x):
    return x * x


def length(data):
    return len(data)


class EcsCalls:
    """Records the parameters and responses of one ECS operation."""

    def __init__(self, client, operation):
        self.params: list[dict] = []
        self.responses: list[dict] = []
        self._lock = threading.Lock()
        client.meta.events.register(
            f"before-parameter-build.ecs.{operation}", self._before
        )
        client.meta.events.register(f"after-call.ecs.{operation}", self._after)

    def _before(self, params, **kwargs):
        with self._lock:
            self.params.append(dict(params))

    def _after(self, parsed, **kwargs):
        with self._lock:
            self.responses.append(parsed)

    def arns(self):
        return [t["taskArn"] for r in self.responses for t in r.get("tasks", [])]


def session_json(plan):
    cfg = plan.config
    body = (
        boto3.client("s3", region_name=REGION)
        .get_object(Bucket=cfg.bucket, Key=registry_key(cfg.prefix, plan.session_id))[
            "Body"
        ]
        .read()
    )
    return json.loads(body)


def test_ecs_run_task_count_at_most_ten_per_call(fake):
    with Plan(workers=23, idle_timeout=1) as plan:
        calls = EcsCalls(plan._clients.ecs, "RunTask")
        futures = [plan.submit(square, i) for i in range(23)]
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(23)]
    counts = [p["count"] for p in calls.params]
    assert counts and all(1 <= c <= 10 for c in counts)
    assert sum(counts) == len(calls.arns()) <= 23
    assert len(calls.arns()) > 10  # more than one RunTask call was needed


def test_ecs_describe_tasks_at_most_hundred_per_call(aws_env):
    with mock_aws():
        from fakecloud import make_deployment

        make_deployment()
        ecs = boto3.client("ecs", region_name=REGION)
        cfg = load_config(boto3.client("ssm", region_name=REGION), "default")
        spec = _ecs.TaskDefinitionSpec(
            image="img:1",
            size=task_size(0.25, None),
            execution_role_arn=cfg.execution_role_arn,
            task_role_arn=cfg.task_role_arn,
            log_group=cfg.log_group,
            region=REGION,
        )
        td = _ecs.ensure_task_definition(ecs, spec, "default", [])
        arns = []
        for _ in range(25):
            arns += _ecs.run_tasks(
                ecs,
                cluster=cfg.cluster,
                task_definition=td,
                count=10,
                config=cfg,
                environment={"A": "1"},
                tags=[],
                started_by="test",
            ).arns
        assert len(arns) == 250
        calls = EcsCalls(ecs, "DescribeTasks")
        found = _ecs.describe_tasks(ecs, cfg.cluster, arns)
        sizes = [len(p["tasks"]) for p in calls.params]
        assert sizes == [100, 100, 50]
        assert sorted(t["taskArn"] for t in found) == sorted(arns)
        assert _ecs.describe_tasks(ecs, cfg.cluster, []) == []
        with pytest.raises(ValueError, match="1 to 10"):
            _ecs.run_tasks(
                ecs,
                cluster=cfg.cluster,
                task_definition=td,
                count=11,
                config=cfg,
                environment={},
                tags=[],
                started_by="t",
            )


def test_ecs_run_task_overrides_small_when_argument_is_large(fake):
    doc, _ = fake
    big = b"x" * (5 * 1024 * 1024)
    with Plan(workers=1, idle_timeout=1) as plan:
        calls = EcsCalls(plan._clients.ecs, "RunTask")
        assert plan.submit(length, big).result(timeout=60) == len(big)
        s3 = boto3.client("s3", region_name=REGION)
        objs = s3.list_objects_v2(
            Bucket=doc["bucket"],
            Prefix=f"{doc['prefix']}sessions/{plan.session_id}/tasks/",
        )["Contents"]
    assert calls.params
    for params in calls.params:
        assert len(json.dumps(params["overrides"])) < 8192
        assert "xxxx" not in json.dumps(params)
    assert max(o["Size"] for o in objs) > len(big)  # the payload went to S3


def test_ecs_run_tasks_refuses_oversized_overrides():
    cfg_doc = {"subnets": ("s",), "security_groups": (), "assign_public_ip": False}

    class Cfg:
        subnets = cfg_doc["subnets"]
        security_groups = cfg_doc["security_groups"]
        assign_public_ip = False

    class NeverCalled:
        def run_task(self, **kwargs):
            raise AssertionError("RunTask must not be called")

    with pytest.raises(ValueError, match="8192"):
        _ecs.run_tasks(
            NeverCalled(),
            cluster="c",
            task_definition="td",
            count=1,
            config=Cfg(),
            environment={"BIG": "y" * 9000},
            tags=[],
            started_by="t",
        )


def test_ecs_task_definition_reused_for_same_size_new_for_other_memory(fake):
    ecs = boto3.client("ecs", region_name=REGION)

    def run(memory):
        with Plan(workers=1, cpu=1, memory=memory, idle_timeout=1) as plan:
            calls = EcsCalls(plan._clients.ecs, "RegisterTaskDefinition")
            assert plan.submit(square, 3).result(timeout=60) == 9
            return plan._task_definition, len(calls.params)

    first, registered_first = run("2GB")
    second, registered_second = run(2048)
    third, registered_third = run("4GB")
    assert (registered_first, registered_second, registered_third) == (1, 0, 1)
    assert first == second != third
    assert len(ecs.list_task_definitions()["taskDefinitionArns"]) == 2
    td = ecs.describe_task_definition(taskDefinition=third)["taskDefinition"]
    assert (td["cpu"], td["memory"]) == ("1024", "4096")


def test_ecs_quota_limits_live_workers(fake):
    _, fargate = fake
    peak = []

    with Plan(
        workers=10, cpu=1, vcpu_quota=4, max_tasks_per_worker=1, idle_timeout=1
    ) as plan:

        def before(params, **kwargs):
            alive = sum(1 for t in fargate.tasks() if t.last_status != "STOPPED")
            peak.append(alive + params["count"])

        plan._clients.ecs.meta.events.register(
            "before-parameter-build.ecs.RunTask", before
        )
        futures = [plan.submit(square, i) for i in range(10)]
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(10)]
        waves = plan.status().wave
    assert peak and max(peak) <= 4
    assert len(peak) >= 2 and waves >= 2  # it backfilled as workers exited


def test_ecs_quota_exhausted_by_others_raises_quota_error(fake):
    from starburst_sdk import BrokenPlan, QuotaError

    with Plan(workers=2, cpu=2, vcpu_quota=1, idle_timeout=1) as plan:
        future = plan.submit(square, 2)
        with pytest.raises(BrokenPlan, match="quota") as info:
            future.result(timeout=60)
    assert isinstance(info.value.__cause__, QuotaError)


def test_ecs_tags_identify_deployment_and_session(fake):
    ecs = boto3.client("ecs", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    with Plan(workers=2, idle_timeout=1) as plan:
        calls = EcsCalls(plan._clients.ecs, "RunTask")
        assert plan.submit(square, 4).result(timeout=60) == 16
        queue_tags = sqs.list_queue_tags(QueueUrl=plan._queues.url)["Tags"]
        td_tags = ecs.list_tags_for_resource(resourceArn=plan._task_definition)["tags"]
    want = {"starburst:deployment": "default", "starburst:session": plan.session_id}
    for params in calls.params:
        assert {t["key"]: t["value"] for t in params["tags"]} == want
        assert params["startedBy"].startswith("starburst-")
    for arn in calls.arns():
        tags = ecs.list_tags_for_resource(resourceArn=arn)["tags"]
        assert {t["key"]: t["value"] for t in tags}.items() >= want.items()
    assert queue_tags.items() >= want.items()
    assert {t["key"]: t["value"] for t in td_tags}["starburst:deployment"] == "default"


def test_ecs_every_launched_arn_is_registered(fake):
    with Plan(workers=4, max_tasks_per_worker=1, vcpu_quota=2, idle_timeout=1) as plan:
        calls = EcsCalls(plan._clients.ecs, "RunTask")
        assert list(plan.map(square, range(8), chunksize=1)) == [
            x * x for x in range(8)
        ]
    launched = set(calls.arns())
    assert launched and launched == set(plan.registry.workers)
    doc = session_json(plan)
    assert {w["arn"] for w in doc["workers"]} == launched
    assert doc["state"] == "ended" and doc["session_id"] == plan.session_id
    assert sum(n for _, n in doc["tasks"]) == 8
    again = Registry.from_json(json.dumps(doc).encode())
    assert set(again.workers) == launched
    assert all(not w.alive for w in again.workers.values())
    assert all(w.stopped is not None for w in plan.registry.all())


def test_ecs_cost_stops_growing_after_the_session_ends(fake, monkeypatch):
    import time as real_time
    import types

    from starburst_sdk import _plan

    with Plan(workers=2, idle_timeout=30) as plan:
        assert list(plan.map(square, range(4), chunksize=1)) == [0, 1, 4, 9]
        plan._monitor()  # record the workers' start times, as the engine would
    first = plan.cost()
    assert first > 0
    assert all(w.stopped is not None for w in plan.registry.all())
    assert plan.status().workers_running == 0
    # An hour later the ended session still costs the same.
    later = types.SimpleNamespace(time=lambda: real_time.time() + 3600)
    monkeypatch.setattr(_plan, "time", later)
    assert plan.cost() == first


def test_ecs_status_after_the_plan_ends_asks_ecs_about_workers_not_seen_stop(fake):
    with Plan(workers=1, idle_timeout=30) as plan:
        assert plan.submit(square, 3).result(timeout=60) == 9
    worker = plan.registry.all()[0]
    assert not worker.alive
    worker.status, worker.stopped = "RUNNING", None  # its stop was not yet seen
    status = plan.status()
    assert (status.workers_running, status.workers_stopped) == (0, 1)
    assert worker.stopped is not None
