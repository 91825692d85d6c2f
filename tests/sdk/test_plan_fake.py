"""Plan end to end against the in-process fake cloud (moto + worker threads)."""

from concurrent.futures import as_completed

import pytest

from starburst_sdk import Plan


def square(x):
    return x * x


class Boom(Exception):
    pass


def explode(x):
    raise Boom(f"bad {x}")


def test_plan_submit_returns_value(fake):
    with Plan(workers=2, idle_timeout=2) as plan:
        assert plan.submit(square, 7).result(timeout=60) == 49


def test_plan_map_keeps_order(fake):
    with Plan(workers=3, idle_timeout=2) as plan:
        assert list(plan.map(square, range(50), chunksize=7)) == [
            x * x for x in range(50)
        ]


def test_plan_as_completed_and_exception(fake):
    with Plan(workers=2, idle_timeout=2) as plan:
        fs = [plan.submit(square, i) for i in range(5)] + [plan.submit(explode, 3)]
        done = list(as_completed(fs, timeout=60))
        assert len(done) == 6
        with pytest.raises(Boom, match="bad 3") as info:
            fs[-1].result()
        assert "explode" in str(info.value.__cause__)
