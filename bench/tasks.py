"""The functions every system in the benchmark runs. A module of their own, so
that process pools can import them and starburst ships them by value."""

from __future__ import annotations

import time


def noop(x: int) -> int:
    return x


def sleep_10ms(x: int) -> int:
    time.sleep(0.01)
    return x


def size_of(blob: bytes) -> int:
    return len(blob)


def noop_batch(xs: list[int]) -> list[int]:
    """One hand-batched task: many no-op items in one call."""
    return [noop(x) for x in xs]
