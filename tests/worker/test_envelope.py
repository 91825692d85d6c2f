"""The wire format: task and result envelopes, and what survives them."""

import pickle
import threading
from datetime import UTC, datetime, timedelta, timezone

import msgpack
import pytest

from starburst_worker import envelope
from starburst_worker.envelope import EnvelopeError


def add(a, b=0):
    return a + b


def identity(x):
    return x


def pack(fn, calls, shared=True, task_id="00000001"):
    if shared:
        fn_blob = envelope.dumps(fn)
        blobs = [envelope.dumps((args, kwargs)) for args, kwargs in calls]
    else:
        fn_blob = None
        blobs = [envelope.dumps((fn, args, kwargs)) for args, kwargs in calls]
    return envelope.pack_task(
        task_id=task_id,
        session_id="s1",
        fn_name=envelope.qualified_name(fn),
        fn_blob=fn_blob,
        item_blobs=blobs,
        sdk="0.1.0",
        created=1.0,
    )


def run_items(data):
    """What a worker does with a task envelope: run every item."""
    env = envelope.unpack(data, "task")
    outcomes = []
    for load in envelope.task_items(env):
        try:
            fn, args, kwargs = load()
            outcomes.append(envelope.success(fn(*args, **kwargs), 0.1))
        except Exception as exc:
            outcomes.append(envelope.failure(exc, 0.1))
    return outcomes


def result_round_trip(outcomes, task_id="00000001"):
    data = envelope.pack_result(
        task_id=task_id,
        session_id="s1",
        outcomes=outcomes,
        sdk="0.1.0",
        started=1.0,
        finished=2.0,
        attempt=1,
        worker="w1",
    )
    env = envelope.unpack(data, "result")
    return env, envelope.result_outcomes(env)


TRICKY = [
    2**100,
    -(2**100),
    b"abc",
    "abc",
    {(1, 2): "tuple key", (b"x", "x"): [1, 2]},
    datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    {1, 2, 3},
    frozenset({"a"}),
    (1, (2, (3,))),
    [None, True, 1.5, float("inf")],
    b"",
    "",
    bytearray(b"\x00\xff"),
    complex(1, 2),
]


@pytest.mark.parametrize("value", TRICKY, ids=lambda v: type(v).__name__)
def test_envelope_round_trip_keeps_exact_value_and_type(value):
    (outcome,) = run_items(pack(identity, [((value,), {})]))
    env, (back,) = result_round_trip([outcome])
    got = back.value()
    assert back.ok and env["ok"]
    assert got == value
    assert type(got) is type(value)


def test_envelope_round_trip_bytes_and_str_stay_distinct():
    (outcome,) = run_items(pack(identity, [(([b"a", "a", {b"k": 1, "k": 2}],), {})]))
    _, (back,) = result_round_trip([outcome])
    b, s, d = back.value()
    assert type(b) is bytes and type(s) is str
    assert d == {b"k": 1, "k": 2} and len(d) == 2


def test_envelope_round_trip_timezone_aware_datetime_keeps_offset():
    dt = datetime(
        2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-7), "PDT")
    )
    (outcome,) = run_items(pack(identity, [((dt,), {})]))
    _, (back,) = result_round_trip([outcome])
    got = back.value()
    assert got == dt and got.utcoffset() == timedelta(hours=-7)
    assert got.tzname() == "PDT"


def test_envelope_round_trip_kwargs_and_chunk_order():
    calls = [((i,), {"b": 10 * i}) for i in range(20)]
    outcomes = run_items(pack(add, calls))
    _, back = result_round_trip(outcomes)
    assert [o.value() for o in back] == [11 * i for i in range(20)]


def test_envelope_round_trip_without_shared_function():
    data = pack(add, [((1,), {"b": 2}), ((3,), {})], shared=False)
    _, back = result_round_trip(run_items(data))
    assert [o.value() for o in back] == [3, 3]


def test_envelope_task_fields_are_documented():
    env = envelope.unpack(pack(add, [((1,), {})]), "task")
    assert set(env) == set(envelope.TASK_FIELDS)
    assert env["n"] == 1 and env["fn"].endswith("add")
    assert env["python"] == envelope.PYTHON


def test_envelope_result_fields_are_documented():
    env, _ = result_round_trip([envelope.success(1, 0.0)])
    assert set(env) == set(envelope.RESULT_FIELDS)


def test_envelope_unpack_ignores_unknown_keys():
    env = msgpack.unpackb(pack(add, [((1,), {})]), raw=False)
    env["added_later"] = {"x": 1}
    env = envelope.unpack(msgpack.packb(env, use_bin_type=True), "task")
    assert len(envelope.task_items(env)) == 1


def test_envelope_sha256_mismatch_is_rejected():
    env = msgpack.unpackb(pack(add, [((1,), {})]), raw=False)
    payload = bytearray(env["payload"])
    payload[len(payload) // 2] ^= 0x01
    env["payload"] = bytes(payload)
    with pytest.raises(EnvelopeError, match="sha256"):
        envelope.unpack(msgpack.packb(env, use_bin_type=True), "task")


def test_envelope_truncated_is_rejected():
    data = pack(add, [((1,), {})])
    with pytest.raises(EnvelopeError):
        envelope.unpack(data[: len(data) // 2], "task")


def test_envelope_garbage_is_rejected():
    with pytest.raises(EnvelopeError):
        envelope.unpack(b"\xc1\xc1 not msgpack", "task")
    with pytest.raises(EnvelopeError):
        envelope.unpack(msgpack.packb([1, 2, 3]), "task")


def test_envelope_unknown_version_names_both_versions():
    env = msgpack.unpackb(pack(add, [((1,), {})]), raw=False)
    env["v"] = 99
    with pytest.raises(EnvelopeError) as info:
        envelope.unpack(msgpack.packb(env, use_bin_type=True), "task")
    text = str(info.value)
    assert "99" in text and f"version {envelope.VERSION}" in text


def test_envelope_wrong_kind_is_rejected():
    data = pack(add, [((1,), {})])
    with pytest.raises(EnvelopeError, match="result"):
        envelope.unpack(data, "result")
    result = envelope.pack_result(
        task_id="1",
        session_id="s",
        outcomes=[],
        sdk="0",
        started=0,
        finished=0,
        attempt=1,
        worker="w",
    )
    with pytest.raises(EnvelopeError, match="task"):
        envelope.unpack(result, "task")


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def raise_two_arg():
    raise TwoArgError(404, "gone")


def test_envelope_failure_two_arg_exception_keeps_text_fields():
    (outcome,) = run_items(pack(raise_two_arg, [((), {})]))
    _, (back,) = result_round_trip([outcome])
    assert not back.ok
    assert back.error_type.endswith("TwoArgError")
    assert back.error_text == "404: gone"
    assert "raise_two_arg" in back.traceback
    # The blob is either dropped or rebuilds the exception faithfully.
    if back.blob is not None:
        exc = back.value()
        assert isinstance(exc, TwoArgError)
        assert (exc.code, exc.detail) == (404, "gone")


class LockedError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


def raise_locked():
    raise LockedError("holding a lock")


def test_envelope_failure_unpicklable_exception_keeps_text_fields():
    (outcome,) = run_items(pack(raise_locked, [((), {})]))
    env, (back,) = result_round_trip([outcome])
    assert not back.ok and back.blob is None and back.value() is None
    assert back.error_type.endswith("LockedError")
    assert back.error_text == "holding a lock"
    assert "raise_locked" in back.traceback
    assert env["ok"] is False and env["error_type"].endswith("LockedError")


def return_lock():
    return threading.Lock()


def test_envelope_success_unpicklable_value_becomes_type_error():
    (outcome,) = run_items(pack(return_lock, [((), {})]))
    _, (back,) = result_round_trip([outcome])
    assert not back.ok
    assert back.error_type == "builtins.TypeError"
    assert "lock" in back.error_text and "cannot be pickled" in back.error_text
    assert isinstance(back.value(), TypeError)


def test_envelope_bad_item_does_not_spoil_the_chunk():
    fn_blob = envelope.dumps(add)
    good = envelope.dumps(((1,), {"b": 1}))
    bad = b"\x80\x05definitely not a pickle"
    data = envelope.pack_task(
        task_id="7",
        session_id="s",
        fn_name="add",
        fn_blob=fn_blob,
        item_blobs=[good, bad, good],
        sdk="0",
        created=0,
    )
    _, back = result_round_trip(run_items(data))
    assert [o.ok for o in back] == [True, False, True]
    assert back[0].value() == back[2].value() == 2
    assert back[1].error_type and back[1].error_text is not None


def test_envelope_item_referencing_missing_module_fails_alone():
    # A pickle that names a module the worker lacks (the classic "bad item").
    missing = b"cno_such_mod\nx\n."
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(missing)
    data = envelope.pack_task(
        task_id="8",
        session_id="s",
        fn_name="?",
        fn_blob=None,
        item_blobs=[envelope.dumps((add, (1, 2), {})), missing],
        sdk="0",
        created=0,
    )
    _, back = result_round_trip(run_items(data))
    assert back[0].ok and back[0].value() == 3
    assert not back[1].ok and "ModuleNotFoundError" in back[1].error_type


def test_envelope_describe_unpicklable_names_the_inner_object():
    lock = threading.Lock()
    obj = {"a": [1, 2, {"deep": lock}]}
    try:
        envelope.dumps(obj)
    except Exception as exc:
        text = envelope.describe_unpicklable(obj, exc)
    assert "lock" in text.lower()
    assert text.startswith("_thread.")


def test_envelope_describe_unpicklable_looks_into_closures():
    lock = threading.Lock()
    fn = lambda: lock  # noqa: E731
    try:
        envelope.dumps(fn)
    except Exception as exc:
        text = envelope.describe_unpicklable(fn, exc)
    assert text.startswith("_thread.")


def test_envelope_python_minor():
    assert envelope.python_minor("3.11.7") == "3.11"
    assert envelope.python_minor("3.12") == "3.12"


def test_envelope_function_pickled_by_value_keeps_its_file_name(tmp_path, monkeypatch):
    import importlib

    import cloudpickle

    (tmp_path / "byvalue_mod.py").write_text("def where():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("byvalue_mod")
    cloudpickle.register_pickle_by_value(mod)
    try:
        back = pickle.loads(envelope.dumps(mod.where))
    finally:
        cloudpickle.unregister_pickle_by_value(mod)
    assert back.__code__.co_filename == str(tmp_path / "byvalue_mod.py")
    assert back() == 1
