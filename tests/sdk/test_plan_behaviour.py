"""Plan as a concurrent.futures.Executor, against the in-process fake cloud."""

import io
import json
import threading
from concurrent.futures import CancelledError, wait

import boto3
import fakecloud
import pytest

from starburst_sdk import (
    ConfigError,
    Plan,
    RemoteError,
    RemoteTraceback,
    StarburstError,
)

REGION = "us-east-1"

# The fake cloud runs workers as threads of this process. This module's
# functions travel by value (it is a local module), so a gate they share with
# the test must be looked up at run time, from a module both sides import.
GATE = fakecloud.GATE


@pytest.fixture(autouse=True)
def _gate():
    GATE.clear()
    yield
    GATE.set()  # never leave a worker blocked


def square(x):
    return x * x


def gated(x):
    import fakecloud

    fakecloud.GATE.wait(60)
    return x


class Boom(Exception):
    pass


def explode(x):
    raise Boom(f"bad {x}")


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def raise_two_arg(x):
    raise TwoArgError(x, "went wrong")


class LockedError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


def raise_locked(x):
    raise LockedError(f"locked {x}")


def s3_keys(doc, session_id, kind):
    resp = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=doc["bucket"], Prefix=f"{doc['prefix']}sessions/{session_id}/{kind}/"
    )
    return [o["Key"] for o in resp.get("Contents", [])]


def ecs_tasks(doc, status=None):
    ecs = boto3.client("ecs", region_name=REGION)
    kwargs = {"desiredStatus": status} if status else {}
    return ecs.list_tasks(cluster=doc["cluster"], **kwargs)["taskArns"]


# -- unpicklable arguments ---------------------------------------------------


def _write_file(tmp_path):
    return open(tmp_path / "out.txt", "w")  # noqa: SIM115


def _generator(tmp_path):
    return (i for i in range(3))


def _lock(tmp_path):
    return threading.Lock()


def _lambda_with_lock(tmp_path):
    lock = threading.Lock()
    return lambda: lock


def _nested_lock(tmp_path):
    return {"config": [1, 2, {"guard": threading.RLock()}]}


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (_lock, "_thread.lock"),
        (_write_file, "_io.TextIOWrapper"),
        (_generator, "builtins.generator"),
        (_lambda_with_lock, "_thread.lock"),
        (_nested_lock, "_thread.RLock"),
    ],
    ids=["lock", "file", "generator", "lambda-with-lock", "nested-rlock"],
)
def test_plan_submit_unpicklable_raises_type_error_and_sends_nothing(
    fake, tmp_path, make, type_name
):
    doc, _ = fake
    bad = make(tmp_path)
    try:
        with Plan(workers=2, idle_timeout=1) as plan:
            with pytest.raises(TypeError) as info:
                plan.submit(square, bad)
            with pytest.raises(TypeError):
                plan.submit(square, x=bad)
            with pytest.raises(TypeError):
                plan.map(square, [1, bad, 3])
            assert plan._engine is None  # nothing started
    finally:
        if isinstance(bad, io.IOBase):
            bad.close()
    assert type_name in str(info.value)
    assert "square" in str(info.value)
    assert s3_keys(doc, plan.session_id, "tasks") == []
    assert ecs_tasks(doc) == []
    sqs = boto3.client("sqs", region_name=REGION)
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_plan_submit_unpicklable_function_raises_type_error(fake):
    lock = threading.Lock()
    with (
        Plan(workers=1, idle_timeout=1) as plan,
        pytest.raises(TypeError, match="_thread.lock"),
    ):
        plan.submit(lambda: lock)


def test_plan_submit_not_callable_raises_type_error(fake):
    with (
        Plan(workers=1, idle_timeout=1) as plan,
        pytest.raises(TypeError, match="callable"),
    ):
        plan.submit(42)


# -- map ---------------------------------------------------------------------


def test_plan_map_chunksize_groups_items_per_task_object(fake):
    doc, _ = fake
    with Plan(workers=2, idle_timeout=1) as plan:
        got = list(plan.map(square, range(23), chunksize=5))
        tasks = s3_keys(doc, plan.session_id, "tasks")
        results = s3_keys(doc, plan.session_id, "results")
    assert got == [x * x for x in range(23)]
    assert len(tasks) == len(results) == 5  # 5+5+5+5+3


def test_plan_map_multiple_iterables_stop_at_shortest(fake):
    with Plan(workers=2, idle_timeout=1) as plan:
        assert list(plan.map(pow, [2, 3, 4], [5, 2], chunksize=2)) == [32, 9]
        assert list(plan.map(square, [])) == []


def test_plan_map_exception_in_one_item_keeps_the_others(fake):
    def maybe(x):
        if x == 3:
            raise Boom("three")
        return x

    with Plan(workers=2, idle_timeout=1) as plan:
        it = plan.map(maybe, range(6), chunksize=6)
        assert [next(it) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(Boom, match="three"):
            next(it)


def test_plan_map_timeout_raises_and_cancels_the_rest(fake):
    with Plan(workers=1, idle_timeout=1) as plan:
        it = plan.map(gated, range(10), timeout=0.5, chunksize=1)
        with pytest.raises(TimeoutError):
            next(it)
        GATE.set()
    # At most two tasks (two per live worker) were sent; the rest were never
    # dispatched and were cancelled.
    final = plan.status()
    assert final.completed <= 2 and final.failed == 0
    assert final.pending == final.running == 0


def test_plan_map_timeout_cancels_remaining_futures(fake, monkeypatch):
    created = []
    real_future = __import__("concurrent.futures").futures.Future

    class Recorded(real_future):
        def __init__(self):
            super().__init__()
            created.append(self)

    from starburst_sdk import _plan

    monkeypatch.setattr(_plan, "Future", Recorded)
    with Plan(workers=1, idle_timeout=1) as plan:
        it = plan.map(gated, range(10), timeout=0.5, chunksize=1)
        with pytest.raises(TimeoutError):
            next(it)
        GATE.set()
    assert len(created) == 10
    cancelled = [f for f in created if f.cancelled()]
    finished = [f for f in created if f.done() and not f.cancelled()]
    assert len(cancelled) >= 8 and len(cancelled) + len(finished) == 10
    assert all(f.result() in range(10) for f in finished)


# -- cancellation and shutdown ----------------------------------------------


def test_plan_shutdown_cancel_futures_cancels_pending(fake):
    doc, _ = fake
    plan = Plan(workers=1, idle_timeout=1)
    futures = [plan.submit(gated, i) for i in range(10)]
    plan.shutdown(wait=False, cancel_futures=True)
    GATE.set()
    plan.shutdown(wait=True)
    cancelled = [f for f in futures if f.cancelled()]
    assert len(cancelled) >= 8  # only two can have been sent to the one worker
    for i, f in enumerate(futures):
        assert f.cancelled() or f.result(timeout=0) == i
    status = plan.status()
    assert status.pending == status.running == 0
    assert (status.cancelled, status.completed) == (len(cancelled), 10 - len(cancelled))
    with pytest.raises(RuntimeError, match="shutdown"):
        plan.submit(square, 1)
    assert len(s3_keys(doc, plan.session_id, "tasks")) == 10 - len(cancelled)


def test_plan_future_cancel_before_dispatch(fake):
    doc, _ = fake
    with Plan(workers=1, idle_timeout=1) as plan:
        first = [plan.submit(gated, i) for i in range(2)]
        later = [plan.submit(square, i) for i in range(2, 6)]
        assert all(f.cancel() for f in later[1:])
        GATE.set()
        assert [f.result(timeout=60) for f in first] == [0, 1]
        assert later[0].result(timeout=60) == 4
        for f in later[1:]:
            with pytest.raises(CancelledError):
                f.result()
    assert len(s3_keys(doc, plan.session_id, "tasks")) == 3
    status = plan.status()
    assert status.completed == 3 and status.pending == status.running == 0
    assert status.cancelled == 3 and status.failed == 0


def test_plan_cancelled_work_launches_no_worker(fake, monkeypatch):
    from starburst_sdk import _plan

    doc, _ = fake
    opened = threading.Event()
    real_open = _plan.Plan._open_session

    def open_after_cancel(self):
        opened.wait(60)  # the engine starts only once the test has cancelled
        real_open(self)

    monkeypatch.setattr(_plan.Plan, "_open_session", open_after_cancel)
    with Plan(workers=5, idle_timeout=1) as plan:
        futures = [plan.submit(square, i) for i in range(20)]
        assert all(f.cancel() for f in futures)
        opened.set()
    assert plan.registry.all() == [] and ecs_tasks(doc) == []
    assert s3_keys(doc, plan.session_id, "tasks") == []


def test_plan_with_exit_deletes_queues_and_stops_tasks(fake):
    doc, _ = fake
    sqs = boto3.client("sqs", region_name=REGION)
    with Plan(workers=3, idle_timeout=30) as plan:
        assert list(plan.map(square, range(6), chunksize=1)) == [
            x * x for x in range(6)
        ]
        assert (
            len(sqs.list_queues(QueueNamePrefix=doc["queue_prefix"])["QueueUrls"]) == 3
        )
    assert (
        sqs.list_queues(QueueNamePrefix=doc["queue_prefix"]).get("QueueUrls", []) == []
    )
    assert ecs_tasks(doc) and ecs_tasks(doc, "RUNNING") == []


def test_plan_with_error_stops_everything(fake):
    doc, _ = fake
    sqs = boto3.client("sqs", region_name=REGION)
    with pytest.raises(KeyboardInterrupt), Plan(workers=1, idle_timeout=1) as plan:
        futures = [plan.submit(gated, i) for i in range(5)]
        raise KeyboardInterrupt
    GATE.set()
    for f in futures:
        assert f.cancelled() or isinstance(f.exception(timeout=60), StarburstError)
    assert (
        sqs.list_queues(QueueNamePrefix=doc["queue_prefix"]).get("QueueUrls", []) == []
    )
    assert ecs_tasks(doc, "RUNNING") == []


def test_plan_status_counts_add_up(fake):
    with Plan(workers=2, idle_timeout=1) as plan:
        ok = [plan.submit(square, i) for i in range(7)]
        bad = [plan.submit(explode, i) for i in range(3)]
        wait(ok + bad, timeout=60)
        status = plan.status()
    assert status.completed == 7 and status.failed == 3
    assert status.pending == status.running == 0
    assert status.session_id == plan.session_id
    assert status.wave >= 1
    final = plan.status()
    assert final.workers_running == final.workers_starting == 0
    assert final.workers_stopped >= 1


def test_plan_status_while_running_counts_every_item(fake):
    with Plan(workers=1, idle_timeout=1) as plan:
        futures = [plan.submit(gated, i) for i in range(6)]
        for _ in range(20):
            s = plan.status()
            assert s.pending + s.running + s.completed + s.failed == 6
            if s.running:
                break
            threading.Event().wait(0.05)
        GATE.set()
        wait(futures, timeout=60)


def test_plan_status_adds_up_in_every_snapshot(fake):
    n = 120
    with Plan(workers=4, idle_timeout=1) as plan:
        futures = [plan.submit(square, i) for i in range(n)]
        snapshots = []
        while not all(f.done() for f in futures):
            snapshots.append(plan.status())
        after = plan.status()  # every future is done: all of them are counted
    assert snapshots
    for s in snapshots:
        assert s.pending + s.running + s.completed + s.failed == n, s
    assert (after.completed, after.pending, after.running) == (n, 0, 0)


# -- exceptions --------------------------------------------------------------


def test_plan_user_exception_keeps_type_and_remote_traceback(fake):
    with Plan(workers=1, idle_timeout=1) as plan:
        future = plan.submit(explode, 3)
        exc = future.exception(timeout=60)
    assert type(exc) is Boom and str(exc) == "bad 3"
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "explode" in exc.__cause__.tb and "Boom: bad 3" in exc.__cause__.tb
    assert any("starburst task" in note for note in exc.__notes__)


def test_plan_two_arg_exception_comes_back_typed(fake):
    with Plan(workers=1, idle_timeout=1) as plan:
        exc = plan.submit(raise_two_arg, 7).exception(timeout=60)
    if isinstance(exc, TwoArgError):
        assert (exc.code, exc.detail) == (7, "went wrong")
    else:
        assert isinstance(exc, RemoteError)
        assert exc.error_type.endswith("TwoArgError")
        assert exc.text == "7: went wrong"
        assert "raise_two_arg" in exc.traceback
    assert "crash" not in str(exc).lower()
    assert isinstance(exc.__cause__, RemoteTraceback)


def test_plan_unpicklable_exception_becomes_remote_error(fake):
    with Plan(workers=1, idle_timeout=1) as plan:
        exc = plan.submit(raise_locked, 1).exception(timeout=60)
    assert isinstance(exc, RemoteError)
    assert exc.error_type.endswith("LockedError") and exc.text == "locked 1"
    assert "raise_locked" in exc.traceback


def test_plan_unpicklable_return_value_fails_with_type_error(fake):
    def make_lock(x):
        return threading.Lock()

    with Plan(workers=1, idle_timeout=1) as plan:
        exc = plan.submit(make_lock, 1).exception(timeout=60)
    assert isinstance(exc, TypeError) and "cannot be pickled" in str(exc)


def test_plan_closure_and_kwargs_travel(fake):
    offset = 10

    def add(x, *, scale=1):
        return offset + x * scale

    with Plan(workers=1, idle_timeout=1) as plan:
        assert plan.submit(add, 2, scale=3).result(timeout=60) == 16


def test_plan_in_another_region_than_the_deployment_names_both(fake):
    with pytest.raises(ConfigError, match="'default' in eu-west-1"):
        Plan(region="eu-west-1")
    doc, _ = fake
    ssm = boto3.client("ssm", region_name="eu-west-1")
    ssm.put_parameter(
        Name="/starburst/default/config", Value=json.dumps(doc), Type="String"
    )
    with pytest.raises(ConfigError, match="is in us-east-1.*region is eu-west-1"):
        Plan(region="eu-west-1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"deployment": ""},
        {"memory": float("nan")},
        {"memory": float("inf")},
        {"timeout": float("nan")},
        {"timeout": 0},
    ],
)
def test_plan_refuses_degenerate_values_naming_the_parameter(fake, kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=name):
        Plan(**kwargs)
