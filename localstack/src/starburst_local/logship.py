"""Ship task output to CloudWatch Logs the way Fargate's awslogs driver does.

Each worker writes stdout+stderr straight into a file in the state dir (so a slow or
absent log service never blocks it). One shipper thread tails every registered file
about once a second and sends the complete lines, batched, with PutLogEvents to
group ``awslogs-group``, stream ``<awslogs-stream-prefix>/<container>/<task id>``.
When a task is finished and its file drained, it is dropped. Errors are logged once
per stream and the lines dropped: shipping must never hold up a task.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("starburst.local")

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_000_000
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD


@dataclass
class Stream:
    path: Path
    group: str
    stream: str
    region: str
    create_group: bool = False
    offset: int = 0
    created: bool = False
    finished: bool = False
    failed: bool = False
    pending: bytes = b""


def awslogs_target(
    container_def: dict[str, Any], container: str, task_id: str, default_region: str
) -> tuple[str, str, str, bool] | None:
    """(group, stream, region, create_group) for an awslogs container, else None."""
    conf = container_def.get("logConfiguration") or {}
    if conf.get("logDriver") != "awslogs":
        return None
    opts = conf.get("options") or {}
    group = opts.get("awslogs-group")
    if not group:
        return None
    prefix = opts.get("awslogs-stream-prefix", "")
    stream = f"{prefix}/{container}/{task_id}" if prefix else task_id
    region = opts.get("awslogs-region") or default_region
    return group, stream, region, opts.get("awslogs-create-group") == "true"


class LogShipper:
    """Background thread that tails task output files into CloudWatch Logs."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._streams: dict[str, Stream] = {}
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="starburst-logship", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ship what is left, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def add(self, key: str, stream: Stream) -> None:
        with self._lock:
            self._streams[key] = stream

    def finish(self, key: str) -> None:
        with self._lock:
            if key in self._streams:
                self._streams[key].finished = True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.ship_once()
        self.ship_once(final=True)

    def ship_once(self, final: bool = False) -> None:
        with self._lock:
            items = list(self._streams.items())
        for key, stream in items:
            try:
                self._ship(stream, final or stream.finished)
            except Exception as exc:  # never let one stream kill the thread
                if not stream.failed:
                    log.warning(
                        "shipping %s to CloudWatch Logs %s/%s failed: %s",
                        stream.path,
                        stream.group,
                        stream.stream,
                        exc,
                    )
                stream.failed = True
            if stream.finished and not stream.pending:
                with self._lock:
                    self._streams.pop(key, None)

    def _read_lines(self, stream: Stream, drain: bool) -> list[str]:
        try:
            with open(stream.path, "rb") as fh:
                fh.seek(stream.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        stream.offset += len(data)
        data = stream.pending + data
        lines = data.split(b"\n")
        stream.pending = b"" if drain else lines.pop()
        return [
            ln.decode("utf-8", "replace").rstrip("\r")[:MAX_EVENT_BYTES]
            for ln in lines
            if ln.strip()
        ]

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            import boto3

            self._clients[region] = boto3.client("logs", region_name=region)
        return self._clients[region]

    def _ensure_stream(self, client: Any, stream: Stream) -> None:
        if stream.created:
            return
        if stream.create_group:
            with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
                client.create_log_group(logGroupName=stream.group)
        with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
            client.create_log_stream(
                logGroupName=stream.group, logStreamName=stream.stream
            )
        stream.created = True

    def _ship(self, stream: Stream, drain: bool) -> None:
        lines = self._read_lines(stream, drain)
        if not lines or stream.failed:
            return
        client = self._client(stream.region)
        self._ensure_stream(client, stream)
        now = int(time.time() * 1000)
        for batch in _batches(lines):
            client.put_log_events(
                logGroupName=stream.group,
                logStreamName=stream.stream,
                logEvents=[{"timestamp": now, "message": m} for m in batch],
            )


def _batches(lines: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    size = 0
    for line in lines:
        cost = len(line.encode()) + EVENT_OVERHEAD
        if len(batches[-1]) >= MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(line)
        size += cost
    return [b for b in batches if b]
