"""Catalogue item 6: user exceptions that do not survive pickling come back
with their type name, message and remote traceback, item by item, even when
they share a task object with items that succeeded."""

import threading

from starburst_sdk import Plan, RemoteError, RemoteTraceback


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class LockedError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


def pick(x):
    if x == 1:
        raise TwoArgError(x, "two-argument constructor")
    if x == 2:
        raise LockedError(f"holds a lock {x}")
    return x * 10


def test_unusual_exceptions_in_a_chunk_keep_type_message_and_traceback(fake):
    with Plan(workers=1, idle_timeout=1) as plan:
        futures = [plan.submit(pick, x) for x in range(4)]
        outcomes = [f.exception(timeout=60) or f.result() for f in futures]
    assert outcomes[0] == 0 and outcomes[3] == 30
    for exc, name, text in (
        (outcomes[1], "TwoArgError", "1: two-argument constructor"),
        (outcomes[2], "LockedError", "holds a lock 2"),
    ):
        assert isinstance(exc, RemoteError), repr(exc)
        assert exc.error_type.endswith(name) and exc.text == text
        assert isinstance(exc.__cause__, RemoteTraceback)
        assert "in pick" in exc.traceback and text in exc.traceback
        assert "crash" not in str(exc).lower() and "lost" not in str(exc).lower()
        assert any("starburst task" in note for note in exc.__notes__)
