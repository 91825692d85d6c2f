"""Automatic chunking: how items are grouped into task objects, and that each
item keeps its own order, outcome and cancellation. Nothing here is timed."""

import threading
from concurrent.futures import CancelledError

import pytest

from starburst_sdk import Plan, _plan
from starburst_sdk._plan import MAX_CHUNK_ITEMS, _Group


def square(x):
    return x * x


class Boom(Exception):
    pass


def every_seventh_fails(x):
    if x % 7 == 0:
        raise Boom(f"bad {x}")
    return x


@pytest.fixture
def held_engine(monkeypatch):
    """The engine opens the session only once the test sets the event, so
    everything submitted before then is pending together."""
    release = threading.Event()
    real_open = _plan.Plan._open_session

    def open_when_released(self):
        release.wait(60)
        real_open(self)

    monkeypatch.setattr(_plan.Plan, "_open_session", open_when_released)
    yield release
    release.set()


def group(total, item_seconds=None, chunksize=None):
    return _Group(
        "f", None, chunksize, remaining=total, total=total, item_seconds=item_seconds
    )


def test_chunk_items_spreads_a_measured_group_two_chunks_per_worker(fake):
    plan = Plan(workers=4)
    try:
        assert plan._chunk_items(group(10_000, item_seconds=1e-5)) == 1250
        assert plan._chunk_items(group(7, item_seconds=1e-5)) == 1
        assert plan._chunk_items(group(10**8, item_seconds=1e-9)) == MAX_CHUNK_ITEMS
    finally:
        plan.shutdown()


def test_chunk_items_holds_a_chunk_to_about_a_second_of_work(fake):
    plan = Plan(workers=4)
    try:
        assert plan._chunk_items(group(10_000, item_seconds=0.01)) == 100
        # 10 s of work on 4 workers: 12 equal chunks (three rounds), not 10
        assert plan._chunk_items(group(1_000, item_seconds=0.01)) == 84
        assert plan._chunk_items(group(10_000, item_seconds=5.0)) == 1
    finally:
        plan.shutdown()


def test_chunk_items_sends_one_item_until_the_group_is_measured(fake):
    plan = Plan(workers=4)
    try:
        assert plan._chunk_items(group(10_000)) == 1
    finally:
        plan.shutdown()


def test_chunk_items_chunksize_and_max_tasks_per_worker_override(fake):
    plan = Plan(workers=4, chunksize=7)
    one = Plan(workers=4, max_tasks_per_worker=1)
    try:
        assert plan._chunk_items(group(10_000, item_seconds=1e-5, chunksize=3)) == 3
        assert one._chunk_items(group(10_000, item_seconds=1e-5)) == 1
        assert one._chunk_items(group(10_000, item_seconds=1e-5, chunksize=5)) == 5
    finally:
        plan.shutdown()
        one.shutdown()


def test_plan_map_sends_a_large_map_in_few_task_objects(fake):
    with Plan(workers=2, idle_timeout=1) as plan:
        assert list(plan.map(square, range(4))) == [0, 1, 4, 9]  # measures square
        before = len(plan.registry.task_sizes)
        assert list(plan.map(square, range(400))) == [x * x for x in range(400)]
        sizes = plan.registry.task_sizes[before:]
    assert sum(sizes) == 400
    assert len(sizes) <= 8, sizes  # two per worker, unless square were very slow


def test_plan_submit_burst_is_coalesced_into_few_task_objects(fake, held_engine):
    with Plan(workers=2, idle_timeout=1) as plan:
        futures = [plan.submit(square, i) for i in range(100)]
        held_engine.set()
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(100)]
        sizes = plan.registry.task_sizes
    assert sum(sizes) == 100
    # One item per task object until the first results measure square (two
    # per worker), then the rest spread over the workers.
    assert len(sizes) <= 12, sizes


def test_plan_chunked_items_keep_their_own_outcome(fake, held_engine):
    with Plan(workers=2, idle_timeout=1, chunksize=25) as plan:
        futures = [plan.submit(every_seventh_fails, i) for i in range(100)]
        held_engine.set()
        for i, f in enumerate(futures):
            if i % 7 == 0:
                with pytest.raises(Boom) as info:
                    f.result(timeout=60)
                assert info.value.args == (f"bad {i}",)
            else:
                assert f.result(timeout=60) == i
        assert plan.registry.task_sizes == [25, 25, 25, 25]
        status = plan.status()
    assert (status.completed, status.failed) == (100 - 15, 15)


def test_plan_automatic_map_keeps_order_with_failures(fake):
    with Plan(workers=3, idle_timeout=1) as plan:
        list(plan.map(every_seventh_fails, [1, 2]))  # measured: chunks follow
        it = plan.map(every_seventh_fails, range(1, 301))
        assert [next(it) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
        with pytest.raises(Boom) as info:
            next(it)
        assert info.value.args == ("bad 7",)
        assert len(plan.registry.task_sizes) < 30


def test_plan_cancelled_items_are_left_out_of_their_chunk(fake, held_engine):
    with Plan(workers=1, idle_timeout=1, chunksize=10) as plan:
        futures = [plan.submit(square, i) for i in range(40)]
        assert all(f.cancel() for f in futures[1::2])
        held_engine.set()
        for i, f in enumerate(futures):
            if i % 2:
                with pytest.raises(CancelledError):
                    f.result(timeout=60)
            else:
                assert f.result(timeout=60) == i * i
        assert plan.registry.task_sizes == [10, 10]


def test_plan_chunksize_argument_overrides_automatic_sizing(fake, held_engine):
    with Plan(workers=2, idle_timeout=1, chunksize=3) as plan:
        futures = [plan.submit(square, i) for i in range(10)]
        held_engine.set()
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(10)]
        assert list(plan.map(square, range(5), chunksize=4)) == [0, 1, 4, 9, 16]
        assert plan.registry.task_sizes == [3, 3, 3, 1, 4, 1]


def test_plan_max_tasks_per_worker_one_starts_a_worker_per_call(fake):
    with Plan(workers=2, max_tasks_per_worker=1, idle_timeout=1) as plan:
        assert list(plan.map(square, range(5))) == [0, 1, 4, 9, 16]
        assert plan.registry.task_sizes == [1] * 5
    assert len(plan.registry.all()) == 5


def make_adder(k):
    return lambda x: x + k


def test_plan_submit_closures_of_one_name_keep_their_own_values(fake, held_engine):
    with Plan(workers=2, idle_timeout=1) as plan:
        futures = [plan.submit(make_adder(k), 100) for k in range(6)]
        futures += [plan.submit(square, 3), plan.submit(make_adder(0), 7)]
        held_engine.set()
        assert [f.result(timeout=60) for f in futures] == [
            100,
            101,
            102,
            103,
            104,
            105,
            9,
            7,
        ]
