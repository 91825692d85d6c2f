"""Fault injection for the local Fargate runner.

Faults are posted as JSON to ``POST /_starburst/faults`` on the runner (or added in
process with :meth:`FaultBook.add`) and consumed by the driver:

``{"kind": "kill", "task": "<arn|id>"|null, "after": 0, "exit_code": 137, "reason": ""}``
    SIGKILL the task's process tree ``after`` seconds after it runs (``task`` null:
    the next task that starts) and report ``exit_code`` (stop code
    EssentialContainerExited, container reason ``reason`` if given).
``{"kind": "start_failure", "count": 1, "reason": "CannotPullContainerError: ..."}``
    the next ``count`` task starts fail: STOPPED, stop code TaskFailedToStart.
``{"kind": "spot_interruption", "task": "<arn|id>"|null, "after": 0}``
    SIGTERM, then SIGKILL after the stop grace; stop code SpotInterruption,
    reason "Your Spot Task was interrupted.".
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("kill", "start_failure", "spot_interruption")
DEFAULT_START_FAILURE = (
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
    "failed to resolve ref: not found (injected by the local runner)"
)
SPOT_REASON = "Your Spot Task was interrupted."


@dataclass
class Fault:
    """One pending fault; ``task`` None means "the next task that starts"."""

    kind: str
    task: str | None = None
    after: float = 0.0
    exit_code: int = 137
    reason: str = ""
    count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Any) -> Fault:
        if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
            raise ValueError(
                f"a fault is a JSON object with kind in {KINDS}, got {doc!r}"
            )
        fault = cls(
            kind=doc["kind"],
            task=doc.get("task") or None,
            after=float(doc.get("after", 0) or 0),
            exit_code=int(doc.get("exit_code", 137)),
            reason=str(doc.get("reason", "") or ""),
            count=int(doc.get("count", 1)),
        )
        if fault.count < 1 or fault.after < 0:
            raise ValueError("a fault's count must be >= 1 and after >= 0")
        if fault.kind == "start_failure" and not fault.reason:
            fault.reason = DEFAULT_START_FAILURE
        return fault

    def matches(self, arn: str) -> bool:
        return self.task is None or arn == self.task or arn.endswith("/" + self.task)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("extra")
        return doc


class FaultBook:
    """Thread-safe store of pending faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def take_start_failure(self) -> Fault | None:
        """Consume one count of the oldest start failure, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == "start_failure":
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def take_for_task(self, arn: str, starting: bool) -> list[Fault]:
        """Consume kill / spot faults aimed at ``arn`` (untargeted ones only when
        ``starting`` is True, i.e. as the task starts)."""
        taken: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.kind == "start_failure":
                    continue
                if fault.task is None and not starting:
                    continue
                if fault.matches(arn):
                    taken.append(fault)
                    self._faults.remove(fault)
        return taken
