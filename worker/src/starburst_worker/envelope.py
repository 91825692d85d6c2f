"""The wire format shared by the SDK and the worker.

A task and a result are each one msgpack map (an *envelope*), versioned, whose
``payload`` field holds the user's objects as cloudpickle bytes. The payload is
itself a small msgpack array of cloudpickle blobs, one per item, so that one
task object can carry a chunk of items and every item keeps its own outcome:

task payload    [fn_blob | nil, [item_blob, ...]]
                fn_blob   = cloudpickle(fn)            (shared by every item)
                item_blob = cloudpickle((args, kwargs))        if fn_blob is set
                            cloudpickle((fn, args, kwargs))    otherwise

result payload  [outcome, ...]   one per item, in the task's order
                outcome = [ok, blob | nil, error_type, error_text, traceback,
                           seconds]
                blob = cloudpickle(value) when ok, cloudpickle(exception) when
                not and the exception survives a round trip, nil otherwise.
                The text fields are always set for a failed item.

``sha256`` is the hex digest of ``payload`` and is checked on every read.
Envelope keys are in ``TASK_FIELDS`` and ``RESULT_FIELDS``; readers ignore keys
they do not know, so later versions can add fields without breaking older
readers. Only a change to the meaning of an existing field bumps ``VERSION``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import traceback as tb_module
import types
from collections import ChainMap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import msgpack

VERSION = 1
PYTHON = ".".join(map(str, sys.version_info[:3]))

TASK_FIELDS = (
    "v",
    "kind",
    "task_id",
    "session_id",
    "fn",
    "n",
    "payload",
    "sha256",
    "python",
    "sdk",
    "created",
)
RESULT_FIELDS = (
    "v",
    "kind",
    "task_id",
    "session_id",
    "n",
    "payload",
    "sha256",
    "python",
    "sdk",
    "ok",
    "error_type",
    "error_text",
    "traceback",
    "started",
    "finished",
    "attempt",
    "worker",
)


class EnvelopeError(ValueError):
    """An envelope is corrupt, truncated, of an unknown version or of the wrong kind."""


def python_minor(version: str) -> str:
    """``"3.11.7"`` -> ``"3.11"``."""
    return ".".join(version.split(".")[:2])


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


_CLOUDPICKLE_CODE_REDUCE = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _code_reduce(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, keeping its file name.

    cloudpickle writes ``<dynamic-code>`` as the file of every function it
    pickles by value (the user's own modules, ``__main__``), for payloads that
    do not depend on paths; a remote traceback would then name no file. The
    real name costs a few bytes and lets the traceback say where the user's
    code is (the client adds the source lines, which the worker lacks).
    """
    ctor, args, *rest = _CLOUDPICKLE_CODE_REDUCE(code)
    args = tuple(
        code.co_filename if isinstance(a, str) and a == "<dynamic-code>" else a
        for a in args
    )
    return (ctor, args, *rest)


class _Pickler(cloudpickle.Pickler):
    dispatch_table = ChainMap(
        {types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table
    )


def dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def qualified_name(fn: Any) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


# ---------------------------------------------------------------------------
# Tasks


def pack_task(
    *,
    task_id: str,
    session_id: str,
    fn_name: str,
    fn_blob: bytes | None,
    item_blobs: Sequence[bytes],
    sdk: str,
    created: float,
) -> bytes:
    """Build a task envelope from already pickled blobs."""
    payload = msgpack.packb([fn_blob, list(item_blobs)], use_bin_type=True)
    return msgpack.packb(
        {
            "v": VERSION,
            "kind": "task",
            "task_id": task_id,
            "session_id": session_id,
            "fn": fn_name,
            "n": len(item_blobs),
            "payload": payload,
            "sha256": digest(payload),
            "python": PYTHON,
            "sdk": sdk,
            "created": created,
        },
        use_bin_type=True,
    )


def unpack(data: bytes, kind: str) -> dict[str, Any]:
    """Decode an envelope of ``kind`` and verify its checksum."""
    try:
        env = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise EnvelopeError(f"not a starburst {kind} envelope: {exc}") from None
    if not isinstance(env, dict) or env.get("kind") != kind:
        raise EnvelopeError(f"not a starburst {kind} envelope")
    if env.get("v") != VERSION:
        raise EnvelopeError(
            f"{kind} envelope has format version {env.get('v')!r}, this code reads "
            f"version {VERSION}; install the same starburst version on both sides"
        )
    payload = env.get("payload")
    if not isinstance(payload, bytes) or digest(payload) != env.get("sha256"):
        raise EnvelopeError(
            f"{kind} {env.get('task_id')!r}: payload does not match its sha256 "
            "(the object was truncated or modified in storage)"
        )
    return env


def task_items(env: dict[str, Any]) -> list[Callable[[], tuple[Callable, tuple, dict]]]:
    """Return one loader per item; each loader unpickles that item's call.

    Loading lazily keeps a bad item (say, a module the worker lacks) from
    failing the whole chunk: only that item's outcome becomes an error.
    """
    fn_blob, blobs = msgpack.unpackb(env["payload"], raw=False)
    shared: list[Any] = []

    def load(blob: bytes) -> tuple[Callable, tuple, dict]:
        if fn_blob is None:
            return pickle.loads(blob)
        if not shared:
            shared.append(pickle.loads(fn_blob))
        args, kwargs = pickle.loads(blob)
        return shared[0], args, kwargs

    return [lambda b=blob: load(b) for blob in blobs]


# ---------------------------------------------------------------------------
# Results


@dataclass
class Outcome:
    """What one item produced: a value, or an error described by text and maybe
    by the exception object itself."""

    ok: bool
    blob: bytes | None = None
    error_type: str | None = None
    error_text: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    _value: Any = field(default=None, repr=False)

    def to_wire(self) -> list[Any]:
        return [
            self.ok,
            self.blob,
            self.error_type,
            self.error_text,
            self.traceback,
            self.seconds,
        ]

    @classmethod
    def from_wire(cls, item: list[Any]) -> Outcome:
        ok, blob, error_type, error_text, traceback, seconds = item[:6]
        return cls(ok, blob, error_type, error_text, traceback, seconds)

    def value(self) -> Any:
        """The returned value, or the exception object (None if it was lost)."""
        return None if self.blob is None else pickle.loads(self.blob)


def success(value: Any, seconds: float) -> Outcome:
    """Pickle a returned value; a value that cannot be pickled becomes an error."""
    try:
        return Outcome(True, dumps(value), seconds=seconds)
    except Exception as exc:
        return failure(
            TypeError(
                f"the function returned a {type(value).__module__}."
                f"{type(value).__qualname__}, which cannot be pickled: {exc}"
            ),
            seconds,
            tb_text="",
        )


def failure(exc: BaseException, seconds: float, tb_text: str | None = None) -> Outcome:
    """Describe an exception in text, and keep the object if it round-trips.

    An exception whose constructor takes unusual arguments pickles fine but
    fails to unpickle; one holding a lock or socket does not pickle at all.
    Either way the text fields still carry its type, message and traceback.
    """
    if tb_text is None:
        tb_text = "".join(tb_module.format_exception(exc))
    blob: bytes | None
    try:
        blob = dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    try:
        text = str(exc)
    except Exception:
        text = f"<{type(exc).__name__} whose str() failed>"
    return Outcome(
        False,
        blob,
        f"{type(exc).__module__}.{type(exc).__qualname__}",
        text,
        tb_text,
        seconds,
    )


def pack_result(
    *,
    task_id: str,
    session_id: str,
    outcomes: Sequence[Outcome],
    sdk: str,
    started: float,
    finished: float,
    attempt: int,
    worker: str,
) -> bytes:
    payload = msgpack.packb([o.to_wire() for o in outcomes], use_bin_type=True)
    first_error = next((o for o in outcomes if not o.ok), None)
    return msgpack.packb(
        {
            "v": VERSION,
            "kind": "result",
            "task_id": task_id,
            "session_id": session_id,
            "n": len(outcomes),
            "payload": payload,
            "sha256": digest(payload),
            "python": PYTHON,
            "sdk": sdk,
            "ok": first_error is None,
            "error_type": first_error.error_type if first_error else None,
            "error_text": first_error.error_text if first_error else None,
            "traceback": first_error.traceback if first_error else None,
            "started": started,
            "finished": finished,
            "attempt": attempt,
            "worker": worker,
        },
        use_bin_type=True,
    )


def result_outcomes(env: dict[str, Any]) -> list[Outcome]:
    return [
        Outcome.from_wire(item) for item in msgpack.unpackb(env["payload"], raw=False)
    ]


def describe_unpicklable(obj: Any, exc: BaseException) -> str:
    """Find the innermost object that fails to pickle, for an error message."""
    culprit = _find_unpicklable(obj, depth=0)
    if culprit is None:
        culprit = obj
    return (
        f"{type(culprit).__module__}.{type(culprit).__qualname__} "
        f"({_short_repr(culprit)}): {exc}"
    )


def _short_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = object.__repr__(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _pickles(obj: Any) -> bool:
    try:
        cloudpickle.dump(obj, io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL)
        return True
    except Exception:
        return False


def _find_unpicklable(obj: Any, depth: int) -> Any | None:
    if depth > 6 or _pickles(obj):
        return None
    children: list[Any] = []
    if isinstance(obj, dict):
        children = list(obj.keys()) + list(obj.values())
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not callable(obj):
        children = list(vars(obj).values())
    elif callable(obj) and getattr(obj, "__closure__", None):
        children = [c.cell_contents for c in obj.__closure__ if _has_contents(c)]
    for child in children:
        found = _find_unpicklable(child, depth + 1)
        if found is not None:
            return found
    return obj


def _has_contents(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
        return True
    except ValueError:
        return False
