"""``Plan``: a ``concurrent.futures.Executor`` whose workers are Fargate tasks.

Data flow, and which thread owns each step::

    submit/map (caller)   pickle now, queue a _Task in memory; never touches the network
          │
    engine thread         first work: create the session's queues, task definition
          │               launch: the wave queue starts min(workers, tasks) workers
          │                       within the vCPU quota, ten per RunTask, and backfills
          │               dispatch: PUT task objects, send ids to SQS, keeping about
          │                         two tasks per live worker in the queue
          │               monitor: DescribeTasks; a worker that stopped badly has its
          │                        claimed task released for retry, or failed
          ▼
    collector thread      list results/, GET each new result by exact key, resolve
                          futures; drain the dead-letter queue into failures

A detached plan (``Plan(detach=True)``) sends every task up front instead of
keeping the queue shallow, and leaves its queues and workers behind when it
shuts down; ``Plan.attach`` rebuilds a plan from the session's registry and
collects the results. With ``max_cost``, the engine checks the spend after
every DescribeTasks and before every launch (see ``_launch`` and
``_check_budget``).

Lock order: ``Plan._lock`` guards the task tables (``_pending``, ``_inflight``)
and counters; it is never held across a network call. Futures are completed
outside the lock, because completing a future runs user callbacks.
"""

from __future__ import annotations

import itertools
import linecache
import logging
import math
import os
import re
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.thread import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starburst_worker import __version__ as _worker_version
from starburst_worker import envelope

from . import _cost, _ecs, _image, _quota
from ._aws import Clients, credentials_error, error_code
from ._config import DeploymentConfig, default_deployment, load_config
from ._errors import (
    BrokenPlan,
    BudgetExceededError,
    ConfigError,
    CredentialsError,
    QuotaError,
    RemoteError,
    RemoteTraceback,
    ResultMissingError,
    SessionCancelledError,
    SessionNotFoundError,
    StarburstError,
    WorkerLostError,
)
from ._modules import ship_local_modules
from ._resources import TaskSize, task_size
from ._session import (
    Registry,
    SessionQueues,
    WorkerRecord,
    cancel_key,
    claim_key,
    new_session_id,
    registry_key,
    result_key,
    results_prefix,
    task_key,
)

log = logging.getLogger("starburst")

SDK_VERSION = _worker_version
CHUNK_BYTES = 1 << 20  # a task object carries about a megabyte at most
CHUNK_SECONDS = 1.0  # ... and runs for about a second
MAX_CHUNK_ITEMS = 10_000
UNMEASURED_CHUNK_ITEMS = 1  # until the first result says how long an item takes
SUBMIT_WINDOW = 0.01  # a burst of submit() calls is sent once it pauses this long,
SUBMIT_WINDOW_MAX = 0.1  # ... or has gone on this long
MAX_PENDING_BYTES = 256 << 20  # submit() waits while more than this is unsent
QUEUE_DEPTH_PER_WORKER = 2  # tasks in SQS per live worker while attached
VISIBILITY = 60  # seconds; the worker's heartbeat extends it while a task runs
TICK = 0.05
MONITOR_INTERVAL = 1.0
CHECKPOINT_INTERVAL = 5.0
#: An attached client rewrites session.json at least this often, so that the
#: CLI can tell a live session from one whose client went away.
HEARTBEAT_INTERVAL = 60.0
DLQ_INTERVAL = 3.0
LIST_INTERVAL = 5.0  # the results listing backs up the done queue
STOP_LATENCY = 2.0  # seconds from StopTask until a worker stops billing, about
STOP_WAIT = 10.0  # how long shutdown waits for stopped workers to report STOPPED
LAUNCH_BACKOFF = 2.0  # seconds before the first retry of a RunTask that failed
LAUNCH_ATTEMPTS = 5  # RunTask failures in a row, no worker running: QuotaError
LIMIT_HOLD = 60.0  # seconds the wave queue stays at the size where AWS said "limit"
RESULT_GRACE = 60.0  # seconds a result may lag its announcement or its message's end
CREDENTIAL_RETRIES = 3  # reloads of refused credentials before CredentialsError
CREDENTIAL_BACKOFF = 1.0  # seconds before the first retry; doubles each time
SAMPLE_CALLS = 3  # local calls timed by estimate(fn=..., sample=...)
PROVIDERS = {False: "FARGATE", True: "FARGATE_SPOT"}

_HINTS = {
    "TaskFailedToStart": (
        "the worker never started: check that the image exists in ECR and that "
        "the subnets reach ECR, S3 and CloudWatch Logs (a public IP, a NAT "
        "gateway or VPC endpoints)"
    ),
    "OutOfMemory": (
        "the worker ran out of memory; give the plan more, e.g. "
        "Plan(memory=...) with the next Fargate size up"
    ),
    "SpotInterruption": "AWS reclaimed the Spot capacity",
    "SIGKILL": (
        "the worker was killed with SIGKILL: by a stop it did not finish within "
        "its grace period, or from outside; ECS names no memory shortage"
    ),
}


@dataclass(eq=False)
class _Group:
    """Pending items that may share a task object: the items of one ``map``
    call, or the ``submit`` calls of one function."""

    fn_name: str
    fn_blob: bytes | None  # map(): the function, pickled once for every item
    chunksize: int | None = None  # fixed by the caller; None sizes by measurement
    remaining: int = 0  # items of this group not yet dispatched
    total: int = 0  # items queued since the group last had none pending
    item_seconds: float | None = None  # moving average measured on the workers


# A pending item: its future, its pickled call (or arguments), its group.
_Item = tuple[Future, bytes, _Group]


@dataclass(eq=False)
class _Task:
    """One task object: a chunk of items sharing a message and a result."""

    task_id: str
    fn_name: str
    fn_blob: bytes | None
    futures: list[Future]
    blobs: list[bytes] | None  # dropped once uploaded
    group: _Group | None = None
    sent_at: float = 0.0


@dataclass(frozen=True)
class PlanStatus:
    """A snapshot of a plan's progress, counted in items (function calls)."""

    session_id: str
    wave: int
    workers_running: int
    workers_starting: int
    workers_stopped: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int

    @property
    def running_workers(self) -> int:
        return self.workers_running


@dataclass
class _Counters:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0  # items whose futures were cancelled before they ran
    items_pending: int = 0
    items_running: int = 0
    wave: int = 0
    start_failures: int = 0
    relaunch_after: float = 0.0
    last_stop_reason: str = ""
    launch_failures: int = 0  # RunTask calls in a row that started nothing
    worker_cap: int = 0  # while > 0: AWS's task limit was hit at this many workers
    cap_until: float = 0.0


@dataclass
class _Settings:
    workers: int
    size: TaskSize
    region: str
    timeout: float | None
    max_attempts: int
    idle_timeout: float
    image: str
    chunksize: int | None
    max_tasks_per_worker: int
    vcpu_quota: float | None
    capacity_provider: str = "FARGATE"
    extra_env: dict[str, str] = field(default_factory=dict)
    arch: str = "x86_64"
    max_cost: float | None = None
    detach: bool = False
    spot_fallback: bool = False

    @property
    def spot(self) -> bool:
        return self.capacity_provider == PROVIDERS[True]

    @classmethod
    def from_dict(cls, d: dict[str, Any], region: str) -> _Settings:
        """Rebuild a session's settings from its registry (``Plan.attach``)."""
        return cls(
            workers=int(d["workers"]),
            size=task_size(d["cpu"], int(d["memory_mib"])),
            region=region,
            timeout=d.get("timeout"),
            max_attempts=int(d.get("max_attempts", 3)),
            idle_timeout=float(d.get("idle_timeout", 60.0)),
            image=d["image"],
            chunksize=None,
            max_tasks_per_worker=int(d.get("max_tasks_per_worker", 0)),
            vcpu_quota=d.get("vcpu_quota"),
            capacity_provider=d.get("capacity_provider", "FARGATE"),
            extra_env=dict(d.get("environment", {})),
            arch=d.get("arch", "x86_64"),
            max_cost=d.get("max_cost"),
            spot_fallback=bool(d.get("spot_fallback")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "cpu": self.size.vcpu,
            "memory_mib": self.size.memory_mib,
            "region": self.region,
            "timeout": self.timeout,
            "max_attempts": self.max_attempts,
            "idle_timeout": self.idle_timeout,
            "image": self.image,
            "capacity_provider": self.capacity_provider,
            "arch": self.arch,
            "max_tasks_per_worker": self.max_tasks_per_worker,
            "vcpu_quota": self.vcpu_quota,
            "max_cost": self.max_cost,
            "detach": self.detach,
            "spot_fallback": self.spot_fallback,
            # Already visible in every worker's RunTask overrides; kept so an
            # attached plan can start workers like the detached plan did.
            "environment": self.extra_env,
        }


class Plan(Executor):
    """Run Python function calls on a pool of AWS Fargate workers.

    A ``Plan`` is a ``concurrent.futures.Executor``: ``submit`` and ``map``
    return ordinary futures, so ``as_completed``, ``wait`` and ``with`` work as
    with a ``ProcessPoolExecutor``. Constructing one reads the deployment's
    config and, when no worker image is given or configured, finds (or builds
    and pushes) the image of this environment in ECR; the session itself
    (queues, task definition, workers) is created at the first ``submit``.
    ``shutdown`` deletes the session's queues and stops its workers. Leaving
    the ``with`` block on an exception (or Ctrl-C, or SIGTERM) does not wait
    for the work as ``ProcessPoolExecutor`` does: it stops the workers, and
    the unfinished futures fail with ``StarburstError``.

    Args:
        workers: the most Fargate tasks to run at once.
        cpu: vCPUs per worker (0.25, 0.5, 1, 2, 4, 8 or 16).
        memory: memory per worker, e.g. ``"4GB"``, ``"512MB"`` or ``4096`` (MiB);
            must be a size Fargate offers for ``cpu``. Default: 2 GB per vCPU.
        region: AWS region; default from the environment (``AWS_REGION``).
        timeout: seconds one call may run on a worker before it raises
            ``TimeoutError``; ``None`` for no limit.
        max_attempts: how many times a call is tried when its worker is lost
            (out of memory, Spot interruption, killed) before its future fails.
        idle_timeout: seconds a worker waits for work before it exits.
        deployment: which starburst deployment (its SSM config document) to use;
            default ``$STARBURST_DEPLOYMENT`` or ``"default"``.
        image: the worker image; default the deployment's ``worker_image``, else
            (or with ``"auto"``) the image of this environment, built and pushed
            to the deployment's ECR repository unless it is there already.
        chunksize: items per task object for ``map``; default sized automatically.
        max_tasks_per_worker: a worker exits after this many task objects
            (``1`` gives each call a fresh Fargate task, e.g. for code that
            leaks); ``0`` for no limit. With a limit, a task object carries
            one call unless ``chunksize`` says otherwise.
        vcpu_quota: the Fargate vCPU quota to assume when the Service Quotas API
            cannot be read (default 32); when it can, the lower of the two.
        environment: extra environment variables for the workers.
        spot: run the workers on Fargate Spot (``FARGATE_SPOT``): cheaper, but
            AWS may reclaim a worker, whose task then runs again elsewhere.
        spot_fallback: with ``spot``, start a worker On-Demand (``FARGATE``)
            when RunTask answers that no Spot capacity is available.
        arch: ``"x86_64"`` or ``"arm64"`` (Graviton, cheaper); the worker image
            must be built for it.
        max_cost: a budget in US dollars. No worker is launched whose
            one-minute minimum would take the spend past it, and when the
            spend reaches it the workers are stopped and every unfinished
            future fails with ``BudgetExceededError``. A detached plan's
            workers each get a share of it and stop taking tasks once their
            share is spent, with no client needed.
        detach: send every task up front, and on shutdown leave the queues
            and workers running (they exit when the queue stays empty for
            ``idle_timeout``). The session id is logged (INFO, logger
            ``starburst``) and is ``plan.session_id``; collect the results
            from any process with ``Plan.attach(session_id)``. This plan's
            own futures that are not done at shutdown fail with
            ``StarburstError`` naming the session.

    Raises:
        ValueError, TypeError: an argument is out of range or of the wrong type,
            or ``max_cost`` is below one worker's one-minute minimum.
        ConfigError: the deployment's config document is missing or invalid, or
            the deployment is in another region than the plan.
        ImageError: the worker image of this environment could not be found
            or built (a package without a Linux wheel, no Docker engine and no
            registry access, ...).
    """

    def __init__(
        self,
        workers: int = 10,
        cpu: float | int | str = 1,
        memory: int | float | str | None = None,
        *,
        region: str | None = None,
        timeout: float | None = None,
        max_attempts: int = 3,
        idle_timeout: float = 60.0,
        deployment: str | None = None,
        image: str | None = None,
        chunksize: int | None = None,
        max_tasks_per_worker: int = 0,
        vcpu_quota: float | None = None,
        environment: dict[str, str] | None = None,
        spot: bool = False,
        arch: str = "x86_64",
        max_cost: float | None = None,
        detach: bool = False,
        spot_fallback: bool = False,
        _clients: Clients | None = None,
    ) -> None:
        _check_int("workers", workers, 1, 10_000)
        size = task_size(cpu, memory)
        if timeout is not None:
            _check_number("timeout", timeout, 0.001, 14 * 24 * 3600)
        _check_int("max_attempts", max_attempts, 1, 100)
        _check_number("idle_timeout", idle_timeout, 1, 12 * 3600)
        if chunksize is not None:
            _check_int("chunksize", chunksize, 1, 1_000_000)
        _check_int("max_tasks_per_worker", max_tasks_per_worker, 0, 1_000_000)
        if vcpu_quota is not None:
            _check_number("vcpu_quota", vcpu_quota, 0.25, 1_000_000)
        env = dict(environment or {})
        for k, v in env.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("environment must map str to str")
        for name, flag in (
            ("spot", spot),
            ("detach", detach),
            ("spot_fallback", spot_fallback),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
        if arch not in _cost.ARCHES:
            raise ValueError(f"arch must be 'x86_64' or 'arm64', got {arch!r}")
        if max_cost is not None:
            if isinstance(max_cost, bool) or not isinstance(max_cost, int | float):
                raise TypeError(
                    f"max_cost must be a number of dollars, not {type(max_cost).__name__}"
                )
            if not 0 < max_cost < 1e7:
                raise ValueError(f"max_cost must be a positive number, got {max_cost}")

        if deployment is not None and (
            not isinstance(deployment, str) or not deployment
        ):
            raise ValueError(
                f"deployment must be a deployment's name, e.g. 'default', got "
                f"{deployment!r}"
            )
        clients = _clients or Clients(region)
        if max_cost is not None:
            try:
                per_second = _cost.rate(clients.region, arch=arch, spot=spot)
            except ValueError as exc:
                raise ValueError(f"max_cost needs the region's price: {exc}") from None
            minute = _cost.MINIMUM_SECONDS * per_second.per_second(
                size.vcpu, size.memory_gb
            )
            if max_cost < minute:
                raise ValueError(
                    f"max_cost=${max_cost:g} is below one worker's one-minute "
                    f"minimum (${minute:.6f} for {size} in {clients.region}"
                    f"{' Spot' if spot else ''}): no worker could run. Raise "
                    "max_cost or use a smaller cpu and memory"
                )
        deployment = deployment or default_deployment()
        config = load_config(clients.ssm, deployment)
        if config.region != clients.region:
            raise ConfigError(
                f"deployment {deployment!r} is in {config.region} (its config "
                f"document says so) but this plan's region is {clients.region}: "
                f"pass Plan(region={config.region!r}) or set "
                f"AWS_REGION={config.region}"
            )
        image = image or config.worker_image
        if not image or image == _image.AUTO:
            # The image of this environment, found in ECR by its content hash or
            # built and pushed there (see _image.py).
            image = _image.ensure_image(config=config, clients=clients, arch=arch).ref
        settings = _Settings(
            workers=workers,
            size=size,
            region=clients.region,
            timeout=timeout,
            max_attempts=max_attempts,
            idle_timeout=idle_timeout,
            image=image,
            chunksize=chunksize,
            max_tasks_per_worker=max_tasks_per_worker,
            vcpu_quota=vcpu_quota,
            capacity_provider=PROVIDERS[spot],
            extra_env=env,
            arch=arch,
            max_cost=None if max_cost is None else float(max_cost),
            detach=detach,
            spot_fallback=spot_fallback,
        )
        session_id = new_session_id()
        registry = Registry(session_id, deployment, time.time(), settings.as_dict())
        self._init_state(clients, config, settings, registry)

    def _init_state(
        self,
        clients: Clients,
        config: DeploymentConfig,
        settings: _Settings,
        registry: Registry,
    ) -> None:
        self._clients = clients
        self.deployment = registry.deployment
        self.config: DeploymentConfig = config
        self._settings = settings
        self.session_id = registry.session_id
        self.registry = registry
        #: For a plan from ``Plan.attach``: one future per item of the
        #: session, in submission order. Empty for other plans.
        self.futures: list[Future] = []
        self._attached = False
        self._aborted = False
        self._was = ""  # an attached plan: the session's state before attach
        self._redetach = False  # an attached plan leaves its session detached
        self._budget_hit: str | None = None
        self._budget_noted = False

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: deque[_Item] = deque()
        self._pending_bytes = 0
        self._submit_groups: dict[str, _Group] = {}
        # Seconds per item last measured for each function (by qualified
        # name), so the next map() of it starts at full chunk size.
        self._item_seconds: dict[str, float] = {}
        self._inflight: dict[str, _Task] = {}
        # Tasks whose result was announced and is being fetched: they no
        # longer hold a worker, so they leave room for the next dispatch.
        self._announced: set[str] = set()
        self._last_enqueue = self._burst_start = 0.0
        self._ids = itertools.count(1)
        self._counters = _Counters()
        self._shutdown = False
        self._broken: BaseException | None = None
        self._queues: SessionQueues | None = None
        self._task_definition: str | None = None
        self._quota: _quota.Quota | None = None
        self._engine: threading.Thread | None = None
        self._collector: threading.Thread | None = None
        self._io = ThreadPoolExecutor(16, thread_name_prefix="starburst-io")
        self._closed = threading.Event()
        self._collector_done = threading.Event()
        self._closing = threading.Event()  # _close_session is deleting the queues
        self._dirty = False
        self._missing: dict[str, float] = {}  # announced, but no result object yet
        self._lost_runs: dict[str, int] = {}  # task id -> runs lost with a worker
        # Detached plans with a budget: dollars each worker may spend before it
        # stops taking tasks by itself (STARBURST_STOP_AT), by task ARN.
        self._allowances: dict[str, float] = {}
        self._launch_allowance: float | None = None
        self._unsent: list[_Task] = []  # in _inflight, but their send failed
        self._refresh_lock = threading.Lock()
        self._refreshed_at = -math.inf
        self._quiet_since: float | None = None  # no message of ours left in SQS

    # -- public API ---------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` on a worker; return its future.

        The call is pickled here: an object that cannot be pickled raises
        ``TypeError`` at once, naming it, and nothing is sent.
        """
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        # The function and the arguments are pickled apart: while the function
        # pickles to the same bytes as the first of its name, each call keeps
        # only its arguments and a chunk carries the function once, as in map.
        fn_blob = _pickle_call(fn, fn)
        name = envelope.qualified_name(fn)
        group = self._submit_group(name, fn_blob)
        if group.fn_blob is None:  # a closure over other values, or redefined
            blob = _pickle_call((fn, args, kwargs), fn)
        else:
            blob = _pickle_call((args, kwargs), fn)
        future: Future = Future()
        self._enqueue([(future, blob, group)], burst=True)
        return future

    def _submit_group(self, name: str, fn_blob: bytes) -> _Group:
        """The group of ``submit`` calls of the function ``name`` pickled as
        ``fn_blob``; the calls of another function of that name share a
        group that carries whole calls."""
        group = self._submit_groups.get(name)
        if group is None:
            group = self._submit_groups.setdefault(
                name,
                _Group(
                    name,
                    fn_blob,
                    self._settings.chunksize,
                    item_seconds=self._item_seconds.get(name),
                ),
            )
        if group.fn_blob == fn_blob:
            return group
        whole = self._submit_groups.get(f"{name}\0")
        if whole is None:
            whole = self._submit_groups.setdefault(
                f"{name}\0",
                _Group(
                    name,
                    None,
                    self._settings.chunksize,
                    item_seconds=self._item_seconds.get(name),
                ),
            )
        return whole

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """Like ``Executor.map``: results in input order, ``timeout`` counted
        from this call. Items travel in chunks (``chunksize`` per task object,
        sized automatically when not given); each item still has its own
        outcome and exception.
        """
        if timeout is not None:
            end = time.monotonic() + timeout
        if chunksize is not None:
            _check_int("chunksize", chunksize, 1, 1_000_000)
        fn_blob = _pickle_call(fn, fn)
        name = envelope.qualified_name(fn)
        group = _Group(
            name,
            fn_blob,
            chunksize or self._settings.chunksize,
            item_seconds=self._item_seconds.get(name),
        )
        items: list[_Item] = [
            (Future(), _pickle_call((args, {}), fn), group)
            for args in zip(*iterables, strict=False)
        ]
        futures = [item[0] for item in items]
        self._enqueue(items)
        del items

        def results() -> Iterator[Any]:
            try:
                futures.reverse()
                while futures:
                    if timeout is None:
                        yield _result_or_cancel(futures.pop())
                    else:
                        yield _result_or_cancel(futures.pop(), end - time.monotonic())
            finally:
                for f in futures:
                    f.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; delete the session's queues and stop its workers
        once the submitted work is done (or cancelled, with ``cancel_futures``)."""
        with self._wake:
            self._shutdown = True
            if cancel_futures:
                self._cancel_pending_locked()
            self._wake.notify_all()
            engine = self._engine
        if engine is None:
            self._closed.set()
            self._io.shutdown(wait=False)
            return
        if wait:
            try:
                self._wait_closed()
            except BaseException as exc:  # Ctrl-C or SIGTERM while waiting
                self._abort(_interrupted(exc))
                raise

    def _wait_closed(self) -> None:
        """Wait until the engine has closed the session and the collector has
        ended. Events, not ``Thread.join``: on Python 3.11 a join interrupted
        by Ctrl-C marks the thread stopped while it still runs, and every
        later join returns at once."""
        self._closed.wait()
        self._collector_done.wait()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            # The caller is leaving on an error (or Ctrl-C): nothing it started
            # should keep running or billing.
            self._abort(
                "the client process received SIGTERM"
                if _terminating and issubclass(exc_type, SystemExit)
                else f"the with-block raised {exc_type.__name__}"
            )
        return False

    def status(self) -> PlanStatus:
        """Workers and items right now.

        While the plan runs, its monitor keeps the workers' states current;
        once it has ended, each call asks ECS about workers not yet known to
        have stopped (they stop a few seconds after shutdown)."""
        if self._closed.is_set() and any(w.alive for w in self.registry.all()):
            _cost.refresh_registry(
                self.registry, self._clients.ecs, self.config.cluster
            )
        workers = self.registry.all()
        with self._lock:
            c = self._counters
            return PlanStatus(
                session_id=self.session_id,
                wave=c.wave,
                workers_running=sum(1 for w in workers if w.status == "RUNNING"),
                workers_starting=sum(
                    1 for w in workers if w.alive and w.status != "RUNNING"
                ),
                workers_stopped=sum(1 for w in workers if not w.alive),
                pending=c.items_pending,
                running=c.items_running,
                completed=c.completed,
                failed=c.failed,
                cancelled=c.cancelled,
            )

    def cost(self) -> float:
        """Dollars Fargate bills for this session's workers so far.

        The total of ``cost_report()``: per second from each worker's start to
        its stop (running workers up to now), one-minute minimum, at the
        region's On-Demand or Spot price for the plan's architecture.

        Raises:
            ValueError: the region is not in the price table.
        """
        return self.cost_report().total

    def cost_report(self) -> _cost.CostReport:
        """This session's bill per worker, refreshed from DescribeTasks first;
        ``estimated`` (with a note) when ECS could not tell some times."""
        if any(w.alive or w.stopped is None for w in self.registry.all()):
            ok = _cost.refresh_registry(
                self.registry, self._clients.ecs, self.config.cluster
            )
            if ok and self._closed.is_set():
                # Workers stopped after the session's final checkpoint: keep
                # session.json (what `starburst-cli cost` reads) in step.
                try:
                    self._checkpoint()
                except Exception as exc:
                    log.debug("could not rewrite session.json: %s", exc)
        return _cost.session_cost(self.registry)

    def estimate(
        self,
        n_tasks: int,
        seconds_per_task: float | None = None,
        *,
        fn: Callable[..., Any] | None = None,
        sample: Iterable[Any] | None = None,
        cold_start: float = _cost.DEFAULT_COLD_START,
        chunksize: int | None = None,
    ) -> _cost.Estimate:
        """What ``n_tasks`` calls would take and cost on this plan, before
        anything is launched.

        Args:
            n_tasks: how many function calls.
            seconds_per_task: how long one call runs on a worker. When not
                given, a few local calls of ``fn`` on ``sample`` are timed.
            fn: the function, to time locally.
            sample: a few inputs for ``fn``: each a tuple of positional
                arguments, or a single argument.
            cold_start: seconds from RunTask until a worker takes work.
            chunksize: items per task object; default as ``map`` chooses.

        Returns:
            An ``Estimate`` (workers, waves, wall_seconds, dollars,
            assumptions); ``print()`` it for a summary.

        Raises:
            TypeError: neither ``seconds_per_task`` nor ``fn`` and ``sample``.
            ValueError: the region is not in the price table.
        """
        _check_int("n_tasks", n_tasks, 0, 10**12)
        timed = ""
        if seconds_per_task is None:
            if fn is None or sample is None:
                raise TypeError(
                    "estimate() needs seconds_per_task, or fn and sample "
                    "to time a few local calls"
                )
            seconds_per_task, timed = _time_calls(fn, sample)
        else:
            _check_number("seconds_per_task", seconds_per_task, 0, 14 * 24 * 3600)
        _check_number("cold_start", cold_start, 0, 3600)
        if chunksize is not None:
            _check_int("chunksize", chunksize, 1, 1_000_000)
        s = self._settings
        return _cost.estimate(
            n_tasks,
            float(seconds_per_task),
            workers=s.workers,
            vcpu=s.size.vcpu,
            memory_gb=s.size.memory_gb,
            region=s.region,
            arch=s.arch,
            spot=s.spot,
            chunksize=chunksize
            or s.chunksize
            or self._chunk_items(
                _Group(
                    "",
                    None,
                    remaining=n_tasks,
                    total=n_tasks,
                    item_seconds=float(seconds_per_task),
                )
            ),
            cold_start=cold_start,
            max_tasks_per_worker=s.max_tasks_per_worker,
            vcpu_quota=s.vcpu_quota,
            idle_tail=s.idle_timeout if s.detach else 0.0,
            timed=timed,
        )

    @classmethod
    def attach(
        cls,
        session_id: str,
        *,
        deployment: str | None = None,
        region: str | None = None,
        _clients: Clients | None = None,
    ) -> Plan:
        """Reconnect to a session, e.g. a detached one, from any process.

        The returned plan's ``futures`` holds one future per item the session
        was sent, in submission order; they resolve as results arrive (those
        already written resolve at once). Workers that stopped while work
        remains are replaced. Its shutdown, once every result is in, deletes
        the session's queues and stops any workers left. Interrupted before
        that (Ctrl-C, SIGTERM, an error in its ``with`` block), a plan
        attached to a detached session leaves it detached, its workers going
        on, and fails its waiting futures saying how to attach again; one
        attached to a session whose client died stops it, as that client's
        plan would have.

        Raises:
            SessionNotFoundError: the deployment has no such session.
            ConfigError: the deployment's config document is missing or invalid.
        """
        if not isinstance(session_id, str) or not session_id:
            raise TypeError("session_id must be a non-empty str")
        clients = _clients or Clients(region)
        deployment = deployment or default_deployment()
        config = load_config(clients.ssm, deployment)
        key = registry_key(config.prefix, session_id)
        try:
            data = clients.s3.get_object(Bucket=config.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                raise
            raise SessionNotFoundError(
                f"no starburst session {session_id!r} in deployment {deployment!r}: "
                f"s3://{config.bucket}/{key} does not exist. List the sessions with "
                "`starburst-cli sessions`"
            ) from None
        registry = Registry.from_json(data)
        found = _unregistered_tasks(clients.s3, config, registry)
        if found:
            # Sent in the seconds before the client's last checkpoint of
            # session.json: task ids are sequential, so the order holds.
            known = zip(registry.task_ids, registry.task_sizes, strict=True)
            pairs = sorted([*known, *found])
            registry.task_ids = [t for t, _ in pairs]
            registry.task_sizes = [n for _, n in pairs]
        was = registry.state
        if _exists(clients.s3, config.bucket, cancel_key(config.prefix, session_id)):
            was = "cancelled"
        if was == "running":
            log.warning(
                "session %s was not detached and its client is gone: the calls it "
                "had not sent yet were lost with it; the %d task(s) it sent are "
                "collected (Plan(detach=True) sends everything up front)",
                session_id,
                len(registry.task_ids),
            )
        registry.state = "running"
        settings = _Settings.from_dict(registry.settings, clients.region)
        plan = cls.__new__(cls)
        plan._init_state(clients, config, settings, registry)
        plan._attached = True
        plan._was = was
        plan._counters.wave = max((w.wave for w in registry.all()), default=0)
        ids = list(registry.task_ids)
        for task_id, n in zip(ids, registry.task_sizes, strict=True):
            fs: list[Future] = [Future() for _ in range(n)]
            for f in fs:
                f.set_running_or_notify_cancel()
            plan.futures.extend(fs)
            plan._inflight[task_id] = _Task(task_id, "", None, fs, None)
            plan._counters.items_running += n
        plan._ids = itertools.count(max((int(t) for t in ids), default=0) + 1)
        if ids:
            plan._collect_listed(sorted(ids))  # results already written resolve now
        if was == "cancelled":  # collect what it finished; start nothing
            plan.registry.state = "cancelled"
            plan._shutdown = True
            plan._fail_outstanding(
                SessionCancelledError(
                    f"session {session_id} was cancelled (`starburst-cli cancel`) "
                    "before this call finished"
                )
            )
            plan._closed.set()
            plan._collector_done.set()
            plan._io.shutdown(wait=False)
            return plan
        with plan._wake:
            plan._start_threads()
        log.info(
            "attached to session %s: %d of %d item(s) already done",
            session_id,
            sum(f.done() for f in plan.futures),
            len(plan.futures),
        )
        return plan

    @property
    def size(self) -> TaskSize:
        return self._settings.size

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"Plan(workers={s.workers}, cpu={s.size.vcpu:g}, "
            f"memory='{s.size.memory_gb:g}GB', region={s.region!r}, "
            f"session={self.session_id!r})"
        )

    # -- submission ---------------------------------------------------------

    def _enqueue(self, items: list[_Item], burst: bool = False) -> None:
        """Queue items in memory. ``burst``: one ``submit``; the engine waits
        for a burst of them to pause (``SUBMIT_WINDOW``) and sends it as a
        few chunks instead of one task object per call."""
        with self._wake:
            for start in range(0, len(items), 1000):
                # Back-pressure: a caller producing work faster than it can be
                # sent waits here instead of filling memory.
                while (
                    self._pending_bytes > MAX_PENDING_BYTES
                    and self._engine
                    and self._broken is None
                    and not self._shutdown
                ):
                    self._wake.wait(0.1)
                self._check_accepting_locked()
                was_idle = not self._pending
                for item in items[start : start + 1000]:
                    self._pending.append(item)
                    item[2].remaining += 1
                    item[2].total += 1
                    self._pending_bytes += len(item[1])
                self._counters.items_pending += len(items[start : start + 1000])
                if burst:
                    self._last_enqueue = time.monotonic()
                    if was_idle:
                        self._burst_start = self._last_enqueue
                if self._engine is None:
                    self._start_threads()
                if was_idle or not burst:  # the engine sees a burst on its own
                    self._wake.notify_all()

    def _check_accepting_locked(self) -> None:
        if self._broken is not None:
            raise BrokenPlan(f"the plan is broken: {self._broken}") from self._broken
        if self._budget_hit is not None:
            raise BudgetExceededError(self._budget_hit)
        if self._shutdown:
            raise RuntimeError("cannot schedule new work after shutdown")

    def _chunk_items(self, group: _Group) -> int:
        """How many of the group's items go into the next task object.

        The group's whole size (a ``map`` call, or a burst of ``submit``
        calls) in equal chunks, so that large work travels in few objects
        and ends on every worker at about the same time: two chunks per
        worker of the plan, or more, a multiple of the workers, where that
        would be over about a second of work as measured on the workers.
        Until the first result tells, one item per task object.
        """
        if group.chunksize:
            return group.chunksize
        if self._settings.max_tasks_per_worker:
            return 1  # the limit counts calls: one per task object
        if group.item_seconds is None:
            return UNMEASURED_CHUNK_ITEMS
        workers = self._settings.workers
        total = max(group.total, group.remaining)
        cap = max(
            1, min(MAX_CHUNK_ITEMS, int(CHUNK_SECONDS / max(group.item_seconds, 1e-6)))
        )
        rounds = max(QUEUE_DEPTH_PER_WORKER, math.ceil(total / (workers * cap)))
        return max(1, math.ceil(total / (workers * rounds)))

    def _start_threads(self) -> None:
        self._engine = threading.Thread(
            target=self._engine_main,
            daemon=True,
            name=f"starburst-engine-{self.session_id}",
        )
        self._collector = threading.Thread(
            target=self._collector_main,
            daemon=True,
            name=f"starburst-collector-{self.session_id}",
        )
        self._engine.start()
        self._collector.start()
        _live_plans.add(self)
        _handle_sigterm()

    def _cancel_pending_locked(self) -> None:
        kept: deque[_Item] = deque()
        for item in self._pending:
            if item[0].cancel() or item[0].cancelled():
                self._drop_pending_locked(item)
                self._counters.cancelled += 1
            else:
                kept.append(item)
        self._pending = kept

    def _drop_pending_locked(self, item: _Item) -> None:
        self._counters.items_pending -= 1
        item[2].remaining -= 1
        if not item[2].remaining:
            item[2].total = 0  # the next burst of submit() calls is sized anew
        self._pending_bytes -= len(item[1])

    # -- engine thread ------------------------------------------------------

    def _engine_main(self) -> None:
        last_monitor = last_checkpoint = 0.0
        refused = 0  # calls in a row AWS refused for their credentials
        try:
            self._open_session()
            while True:
                with self._wake:
                    if (
                        self._shutdown
                        and not self._pending
                        and (not self._inflight or self._may_detach_locked())
                    ):
                        break
                    self._wake.wait(self._engine_wait_locked())
                now = time.monotonic()
                try:
                    self._launch()
                    self._dispatch()
                    if now - last_monitor >= MONITOR_INTERVAL:
                        self._monitor()
                        self._check_budget()
                        self._check_missing()
                        last_monitor = now
                    since = now - last_checkpoint
                    if (self._dirty and since >= CHECKPOINT_INTERVAL) or (
                        since >= HEARTBEAT_INTERVAL
                    ):
                        self._checkpoint()
                        last_checkpoint = now
                except Exception as exc:
                    if not credentials_error(exc):
                        raise
                    refused += 1
                    self._renew_credentials(exc, refused)
                    continue
                refused = 0
        except BaseException as exc:  # the backend failed: fail everything, clean up
            self._fail_session(exc, "starburst session %s failed")
        finally:
            self._close_session()

    def _open_session(self) -> None:
        c, cfg, s = self._clients, self.config, self._settings
        tags = {
            "starburst:deployment": self.deployment,
            "starburst:session": self.session_id,
        }
        name = f"{cfg.queue_prefix}-{self.session_id}"
        if self._attached:
            self._queues = self._find_queues(name)
            _cost.refresh_registry(self.registry, c.ecs, cfg.cluster)
        if self._queues is None:
            self._queues = SessionQueues.create(
                c.sqs,
                name,
                max_receives=dlq_receives(s.max_attempts),
                visibility=VISIBILITY,
                tags=tags,
            )
        spec = _ecs.TaskDefinitionSpec(
            image=s.image,
            size=s.size,
            execution_role_arn=cfg.execution_role_arn,
            task_role_arn=cfg.task_role_arn,
            log_group=cfg.log_group,
            region=s.region,
            arch=s.arch,
        )
        self._task_definition = _ecs.ensure_task_definition(
            c.ecs,
            spec,
            self.deployment,
            _tag_list(tags | {"starburst:managed-by": "sdk"}),
        )
        self._quota = _quota.Quota.read(
            c, cfg.cluster, spot=s.spot, fallback=s.vcpu_quota
        )
        self._checkpoint()
        log.info(
            "session %s: queue %s, task definition %s, vCPU quota %g (%s)",
            self.session_id,
            self._queues.url,
            self._task_definition,
            self._quota.limit,
            self._quota.source,
        )

    def _find_queues(self, name: str) -> SessionQueues | None:
        """An attached session's queues; None, failing the items still
        outstanding, when they are gone (the session ended or was cancelled)."""
        sqs = self._clients.sqs
        try:
            return SessionQueues.find(sqs, name)
        except Exception as exc:
            if "NonExistentQueue" not in error_code(
                exc
            ) and "QueueDoesNotExist" not in error_code(exc):
                raise
        with self._lock:
            missing = sorted(self._inflight)
        for task_id in missing:
            self._fail_task(
                task_id,
                ResultMissingError(
                    f"task {task_id} of session {self.session_id} has no result and the "
                    f"session's queue is gone: {_gone_because(self._was)}"
                ),
            )
        return None

    def _may_detach_locked(self) -> bool:
        """A detached plan may leave once every task is sent and a worker runs."""
        return (
            self._settings.detach
            and not self._aborted
            and self._budget_hit is None
            and bool(self.registry.alive())
        )

    def _worker_env(self) -> dict[str, str]:
        s, cfg = self._settings, self.config
        assert self._queues is not None
        env = {
            "STARBURST_BUCKET": cfg.bucket,
            "STARBURST_PREFIX": cfg.prefix,
            "STARBURST_SESSION": self.session_id,
            "STARBURST_QUEUE_URL": self._queues.url,
            "STARBURST_DONE_QUEUE_URL": self._queues.done_url,
            "STARBURST_IDLE_TIMEOUT": f"{s.idle_timeout:g}",
            "STARBURST_VISIBILITY": str(VISIBILITY),
            "STARBURST_MAX_TASKS": str(s.max_tasks_per_worker),
            "STARBURST_ITEM_TIMEOUT": f"{s.timeout or 0:g}",
            "AWS_REGION": s.region,
            "AWS_DEFAULT_REGION": s.region,
        }
        env.update(s.extra_env)
        return env

    def _launch(self) -> None:
        """The wave queue: keep min(workers, outstanding tasks) workers alive."""
        s = self._settings
        with self._lock:
            outstanding = len(self._inflight)
            for future, _, _ in self._pending:  # cancelled work needs no worker
                if outstanding >= s.workers:
                    break
                if not future.cancelled():
                    outstanding += 1
            if self._shutdown and outstanding == 0:
                return
            if time.monotonic() < self._counters.relaunch_after:
                return
            cap = s.workers
            if (
                self._counters.worker_cap
                and time.monotonic() < self._counters.cap_until
            ):
                cap = min(cap, self._counters.worker_cap)  # AWS's task limit
        alive = self.registry.alive()
        want = min(cap, outstanding) - len(alive)
        if want <= 0:
            return
        assert self._quota is not None
        room = self._quota.room(len(alive), s.size.vcpu)
        if room <= 0:
            if not alive:
                raise QuotaError(
                    f"no worker can start: the Fargate vCPU quota is "
                    f"{self._quota.limit:g} ({self._quota.source}) and "
                    f"{self._quota.others:g} vCPU already run in the cluster; ask "
                    "for more in the Service Quotas console or use a smaller cpu"
                )
            return
        count = min(want, room)
        if s.max_cost is not None:
            count = self._affordable(count, alive)
            if count <= 0:
                return
        env = self._worker_env()
        self._launch_allowance = None
        if s.max_cost is not None and s.detach:
            count, stop_at = self._detached_deadline(count)
            if count <= 0:
                return
            env["STARBURST_STOP_AT"] = f"{stop_at:.3f}"
        with self._lock:
            self._counters.wave += 1
            wave = self._counters.wave
        tags = _tag_list(
            {
                "starburst:deployment": self.deployment,
                "starburst:session": self.session_id,
            }
        )
        launched = 0
        failures: list[dict[str, Any]] = []
        for batch in _ecs.chunks(range(count), _ecs.RUN_TASK_BATCH):
            started, failures = self._start_workers(
                len(batch), s.capacity_provider, env, tags, wave
            )
            launched += started
            if (
                failures
                and s.spot
                and s.spot_fallback
                and all(_launch_failure_kind(f) == "capacity" for f in failures)
            ):
                log.info(
                    "no Fargate Spot capacity for %d worker(s); starting them "
                    "On-Demand (spot_fallback)",
                    len(failures),
                )
                started, failures = self._start_workers(
                    len(failures), PROVIDERS[False], env, tags, wave
                )
                launched += started
            if failures:
                break
        self._dirty = True
        if failures:
            self._on_launch_failures(failures, len(alive) + launched)
        elif launched:
            with self._lock:
                self._counters.launch_failures = 0
        log.info(
            "wave %d: started %d worker(s) (%d running or starting)",
            wave,
            launched,
            len(alive) + launched,
        )

    def _start_workers(
        self,
        count: int,
        provider: str,
        env: dict[str, str],
        tags: list[dict[str, str]],
        wave: int,
    ) -> tuple[int, list[dict[str, Any]]]:
        """One RunTask call; register what it started. -> (started, failures).
        Throttling that outlasts ``run_tasks``' retries counts as a failure
        (the wave queue tries again later) rather than breaking the plan."""
        try:
            result = _ecs.run_tasks(
                self._clients.ecs,
                cluster=self.config.cluster,
                task_definition=self._task_definition or "",
                count=count,
                config=self.config,
                environment=env,
                tags=tags,
                started_by=f"starburst-{self.session_id}",
                capacity_provider=provider,
            )
        except Exception as exc:
            if not _ecs.throttled(exc):
                raise
            return 0, [{"reason": f"RunTask throttled: {exc}"}]
        now = time.time()
        for arn in result.arns:
            self.registry.add_worker(
                WorkerRecord(arn, now, wave, capacity_provider=provider)
            )
            if self._launch_allowance is not None:
                self._allowances[arn] = self._launch_allowance
        failures = result.failures
        if not result.arns and not failures:  # never seen, but never hang on it
            failures = [{"reason": "RunTask returned neither tasks nor failures"}]
        return len(result.arns), failures

    def _on_launch_failures(self, failures: list[dict[str, Any]], running: int) -> None:
        """RunTask started fewer workers than asked. Try again after a backoff;
        at AWS's task limit, hold the wave queue at the workers running now;
        with no worker running after ``LAUNCH_ATTEMPTS`` tries in a row, raise
        ``QuotaError`` quoting AWS."""
        reasons = "; ".join(
            dict.fromkeys(
                f"{f.get('reason') or '?'}"
                + (f" ({f['detail']})" if f.get("detail") else "")
                for f in failures
            )
        )
        kinds = {_launch_failure_kind(f) for f in failures}
        now = time.monotonic()
        with self._lock:
            c = self._counters
            c.launch_failures = 0 if running else c.launch_failures + 1
            tries = c.launch_failures
            c.relaunch_after = now + min(30.0, LAUNCH_BACKOFF * 2 ** max(0, tries - 1))
            if "limit" in kinds and running:
                c.worker_cap, c.cap_until = running, now + LIMIT_HOLD
        log.warning(
            "RunTask could not start %d worker(s) (%d running): %s",
            len(failures),
            running,
            reasons,
        )
        if tries >= LAUNCH_ATTEMPTS:
            raise QuotaError(
                f"no worker could start: RunTask failed {tries} times in a row with "
                f"no worker running; AWS said: {reasons}. {_launch_hint(kinds)}"
            )

    def _affordable(self, count: int, alive: list[WorkerRecord]) -> int:
        """How many of ``count`` new workers the budget allows: the spend so
        far (every live worker billed at least its minute) plus each new
        worker's one-minute minimum must stay within ``max_cost``."""
        s = self._settings
        assert s.max_cost is not None
        spend = _cost.session_cost(self.registry).total
        minute = _cost.MINIMUM_SECONDS * _cost.rate(
            s.region, arch=s.arch, spot=s.spot
        ).per_second(s.size.vcpu, s.size.memory_gb)
        fits = math.floor((s.max_cost - spend) / minute + 1e-9)
        if fits >= count:
            return count
        if fits <= 0 and not alive:
            self._stop_for_budget(
                spend, f"a worker's one-minute minimum costs ${minute:.6f}"
            )
        elif not self._budget_noted:
            self._budget_noted = True
            log.info(
                "session %s: max_cost $%g allows %d more worker(s) of %d wanted "
                "($%.6f committed)",
                self.session_id,
                s.max_cost,
                max(0, fits),
                count,
                spend,
            )
        return max(0, fits)

    def _detached_deadline(self, count: int) -> tuple[int, float]:
        """A detached plan's budget, kept with no client: how many of ``count``
        new workers to start, and when they must stop taking tasks.

        What is left of ``max_cost`` after every worker launched so far (a
        live one counted at its whole allowance, a stopped one at its cost)
        is shared by the new workers; each stops taking tasks once its share
        is spent, counted from its launch (billing starts later, at the image
        pull), less a margin for the call it is running and the stop. A call
        running at the deadline finishes, within ``Plan(timeout=...)``.
        """
        s = self._settings
        # A Spot plan that may fall back to On-Demand is priced On-Demand.
        spot = s.spot and not s.spot_fallback
        per_second = _cost.rate(s.region, arch=s.arch, spot=spot).per_second(
            s.size.vcpu, s.size.memory_gb
        )
        spent = {c.arn: c.dollars for c in _cost.session_cost(self.registry).workers}
        committed = sum(
            max(self._allowances.get(w.arn, 0.0), spent.get(w.arn, 0.0))
            if w.alive
            else spent.get(w.arn, 0.0)
            for w in self.registry.all()
        )
        left = s.max_cost - committed
        count = min(count, math.floor(left / (_cost.MINIMUM_SECONDS * per_second)))
        if count <= 0:
            return 0, 0.0
        share = left / count
        self._launch_allowance = share
        margin = CHUNK_SECONDS + STOP_LATENCY + MONITOR_INTERVAL
        return count, time.time() + share / per_second - margin

    def _check_budget(self) -> None:
        """Stop the workers once the spend would pass ``max_cost`` before the
        next check could stop them."""
        s = self._settings
        if s.max_cost is None or self._budget_hit is not None:
            return
        if not self.registry.alive():
            return
        now = time.time()
        soon = _cost.session_cost(
            self.registry, now=now + MONITOR_INTERVAL + STOP_LATENCY
        ).total
        if soon > s.max_cost:
            spend = _cost.session_cost(self.registry, now=now).total
            self._stop_for_budget(spend, "the workers' running time used it up")

    def _stop_for_budget(self, spend: float, why: str) -> None:
        """Fail every unfinished item; the engine then stops the workers."""
        s = self._settings
        msg = (
            f"the plan's budget max_cost=${s.max_cost:g} is spent: ${spend:.6f} "
            f"billed or committed and {why}; its workers were stopped"
        )
        with self._wake:
            if self._budget_hit is not None:
                return
            self._budget_hit = msg
            self._shutdown = True
            self._wake.notify_all()
        log.warning("session %s: %s", self.session_id, msg)
        self._fail_outstanding(BudgetExceededError(msg))

    def _dispatch(self) -> None:
        """Upload and enqueue tasks, keeping SQS about two tasks per worker deep
        (or sending everything, for a detached plan)."""
        assert self._queues is not None
        with self._lock:
            if self._burst_wait_locked() > 0:
                return  # submit() calls are still coming: send them as one burst
            if self._settings.detach:
                room = len(self._pending)
            else:
                depth = QUEUE_DEPTH_PER_WORKER * max(1, len(self.registry.alive()))
                room = depth - len(self._inflight)
                head = self._pending[0][2] if self._pending else None
                if head is None or head.item_seconds is not None or head.chunksize:
                    # Announced results free their room before they are
                    # fetched, except while the next group waits for its
                    # first measurement, which a fetch brings.
                    room += len(self._announced)
            # Tasks whose upload or send failed (say, credentials refused) go
            # first: they are in _inflight already, so nothing else sends them.
            batch: list[_Task] = [
                t for t in self._unsent if t.task_id in self._inflight
            ]
            self._unsent = []
            while room > 0 and self._pending:
                task = self._next_task_locked()
                if task is None:
                    continue
                self._counters.items_running += len(task.futures)
                self._inflight[task.task_id] = task
                batch.append(task)
                room -= 1
            if batch:
                self._wake.notify_all()  # submit() may be waiting for room
        if not batch:
            return
        cfg = self.config
        now = time.time()

        def upload(task: _Task) -> None:
            if task.blobs is None:
                return  # uploaded before a send that failed
            body = envelope.pack_task(
                task_id=task.task_id,
                session_id=self.session_id,
                fn_name=task.fn_name,
                fn_blob=task.fn_blob,
                item_blobs=task.blobs,
                sdk=SDK_VERSION,
                created=now,
            )
            self._clients.s3.put_object(
                Bucket=cfg.bucket,
                Key=task_key(cfg.prefix, self.session_id, task.task_id),
                Body=body,
            )
            task.blobs = None
            task.fn_blob = None

        try:
            list(self._io.map(upload, batch))
            ids = [t.task_id for t in batch]
            failed = self._queues.send(self._clients.sqs, ids)
        except Exception:
            with self._lock:
                self._unsent = batch
            raise
        if failed:
            raise StarburstError(
                f"SQS refused {len(failed)} message(s) for tasks {failed[:5]}"
            )
        sent = time.monotonic()
        for task in batch:
            task.sent_at = sent
        with self._lock:
            for task in batch:
                self.registry.task_ids.append(task.task_id)
                self.registry.task_sizes.append(len(task.futures))
        self._dirty = True

    def _burst_wait_locked(self) -> float:
        """Seconds until the burst of ``submit`` calls being gathered is sent."""
        if not self._pending or not self._last_enqueue:
            return 0.0
        end = min(
            self._last_enqueue + SUBMIT_WINDOW, self._burst_start + SUBMIT_WINDOW_MAX
        )
        return max(0.0, end - time.monotonic())

    def _engine_wait_locked(self) -> float:
        wait = self._burst_wait_locked()
        return TICK if wait <= 0 else min(TICK, wait + 0.001)

    def _next_task_locked(self) -> _Task | None:
        """Take the next chunk of pending items; None if all were cancelled."""
        group = self._pending[0][2]
        size = self._chunk_items(group)
        nbytes = len(group.fn_blob or b"")
        futures: list[Future] = []
        blobs: list[bytes] = []
        while self._pending and len(futures) < size:
            future, blob, item_group = self._pending[0]
            if item_group is not group or (
                futures and nbytes + len(blob) > CHUNK_BYTES
            ):
                break
            self._pending.popleft()
            self._drop_pending_locked((future, blob, item_group))
            if future.set_running_or_notify_cancel():
                futures.append(future)
                blobs.append(blob)
                nbytes += len(blob)
            else:
                self._counters.cancelled += 1
        if not futures:
            return None
        return _Task(
            f"{next(self._ids):08d}",
            group.fn_name,
            group.fn_blob,
            futures,
            blobs,
            group,
        )

    def _monitor(self) -> None:
        """DescribeTasks on live workers; deal with the ones that stopped."""
        alive = self.registry.alive()
        if not alive:
            return
        descs = _ecs.describe_tasks(
            self._clients.ecs, self.config.cluster, [w.arn for w in alive]
        )
        by_arn = {d["taskArn"]: d for d in descs}
        for worker in alive:
            desc = by_arn.get(worker.arn)
            if desc is None:
                continue
            before = worker.status
            worker.update(desc)
            if worker.status != before:
                self._dirty = True
                log.debug("worker %s: %s -> %s", worker.task_id, before, worker.status)
            if worker.status == "STOPPED":
                self._on_worker_stopped(worker)

    def _on_worker_stopped(self, worker: WorkerRecord) -> None:
        reason = _stop_description(
            worker, self._settings.size.memory_mib, self.session_id
        )
        if worker.started is None or worker.stop_code == "TaskFailedToStart":
            with self._lock:
                self._counters.start_failures += 1
                self._counters.last_stop_reason = reason
                failures = self._counters.start_failures
                self._counters.relaunch_after = time.monotonic() + min(30, 2**failures)
            log.warning("worker %s failed to start: %s", worker.task_id, reason)
            if failures >= self._settings.max_attempts:
                self._fail_outstanding(
                    WorkerLostError(
                        f"{failures} workers in a row failed to start; the last: {reason}"
                    )
                )
            return
        with self._lock:
            self._counters.start_failures = 0
        if not worker.failed:
            log.info("worker %s exited (%s)", worker.task_id, reason)
            return
        log.warning("worker %s stopped: %s", worker.task_id, reason)
        with self._lock:  # for the dead-letter queue's error, if it comes to that
            self._counters.last_stop_reason = reason
        claim = self._read_claim(worker)
        with self._lock:
            inflight = set(self._inflight)
        held = [
            h
            for h in (claim or {}).get("held", [])
            if h.get("task_id") in inflight and not self._result_exists(h["task_id"])
        ]
        # The claim is rewritten when a task starts running, off the thread
        # that runs it: a worker killed at once (a call that allocates too
        # much) may leave a claim that marks none of its unfinished tasks as
        # running. It was running the first it received, then.
        if held and not any(h.get("running", True) for h in held):
            held[0] = {**held[0], "running": True}
        for h in held:
            self._recover(worker, h, reason)

    def _recover(self, worker: WorkerRecord, held: dict[str, Any], reason: str) -> None:
        """Retry (or, out of attempts, fail) a task a lost worker held."""
        task_id = held.get("task_id")
        with self._lock:
            task = self._inflight.get(task_id)
        if task is None or self._result_exists(task_id):
            return
        # Only a run counts as an attempt: a worker that dies while running one
        # task also held the next one it had fetched ahead, which never ran.
        # (A claim from before ``running`` existed counts every held task.)
        with self._lock:
            runs = self._lost_runs.get(task_id, 0) + bool(held.get("running", True))
            self._lost_runs[task_id] = runs
        assert self._queues is not None
        sqs = self._clients.sqs
        if runs >= self._settings.max_attempts:
            try:
                sqs.delete_message(
                    QueueUrl=self._queues.url, ReceiptHandle=held["receipt"]
                )
            except Exception as exc:
                log.debug("could not delete the message of task %s: %s", task_id, exc)
            n = len(task.futures)
            batch = (
                f"; it was one of {n} calls of {task.fn_name or 'the function'} "
                "sent together as one task, which are retried and fail together: "
                "any of them may have stopped the worker (map(..., chunksize=1) "
                "or Plan(chunksize=1) runs them one by one)"
                if n > 1
                else ""
            )
            self._fail_task(
                task_id,
                WorkerLostError(
                    f"the call was lost {runs} time(s) while running, the limit "
                    f"(max_attempts={self._settings.max_attempts}); last worker "
                    f"{worker.task_id} stopped: {reason}{batch} [task {task_id}]"
                ),
            )
        else:
            try:  # make it visible now instead of after the visibility window
                sqs.change_message_visibility(
                    QueueUrl=self._queues.url,
                    ReceiptHandle=held["receipt"],
                    VisibilityTimeout=0,
                )
                log.info(
                    "task %s released for another worker (%d of %d attempts lost)",
                    task_id,
                    runs,
                    self._settings.max_attempts,
                )
            except Exception as exc:
                log.debug("could not release task %s: %s", task_id, exc)

    def _renew_credentials(self, exc: BaseException, refused: int) -> None:
        """AWS refused a call's credentials: rebuild the clients, which reads
        the credentials afresh, and let the caller retry. After
        ``CREDENTIAL_RETRIES`` refusals in a row, raise ``CredentialsError``
        saying what still runs and how to stop or collect it."""
        sid = self.session_id
        if refused > CREDENTIAL_RETRIES:
            alive = self.registry.alive()
            with self._lock:
                unfinished = self._counters.items_pending + self._counters.items_running
            running = ", ".join(w.task_id for w in alive[:10]) + (
                ", ..." if len(alive) > 10 else ""
            )
            raise CredentialsError(
                f"AWS refused this session's credentials {refused} times in a row, "
                f"even after reloading them: {exc}. Session {sid} has {len(alive)} "
                f"worker(s) still running{' (' + running + ')' if alive else ''} "
                f"and {unfinished} unfinished item(s). Renew the credentials, then "
                f"stop the workers with `starburst-cli cancel {sid}` (they also exit "
                f"after idle_timeout={self._settings.idle_timeout:g} s without work)"
            ) from exc
        log.warning(
            "session %s: AWS refused the credentials (%s); reloading them "
            "and retrying (%d of %d)",
            sid,
            exc,
            refused,
            CREDENTIAL_RETRIES,
        )
        with self._refresh_lock:
            if time.monotonic() - self._refreshed_at >= CREDENTIAL_BACKOFF:
                self._clients.refresh()
                self._refreshed_at = time.monotonic()
        self._closed.wait(CREDENTIAL_BACKOFF * 2 ** (refused - 1))

    def _check_missing(self) -> None:
        """Fail, after ``RESULT_GRACE``, tasks whose result should exist but
        does not: a worker announced it, or no message of the session is left
        in SQS (none waiting, none held), so no worker will ever write it."""
        if self._queues is None:
            return
        now = time.monotonic()
        with self._lock:
            old = [
                t
                for t, task in self._inflight.items()
                if now - task.sent_at > RESULT_GRACE
            ]
            due = [
                t
                for t, since in self._missing.items()
                if t in self._inflight and now - since > RESULT_GRACE
            ]
        if old:
            attrs = self._clients.sqs.get_queue_attributes(
                QueueUrl=self._queues.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            if any(int(v) for v in attrs.values()):
                self._quiet_since = None
            elif self._quiet_since is None:
                self._quiet_since = now
            elif now - self._quiet_since > RESULT_GRACE:
                due += old
        cfg = self.config
        for task_id in dict.fromkeys(due):
            if self._result_exists(task_id):
                self._fetch_result(task_id)
                continue
            key = result_key(cfg.prefix, self.session_id, task_id)
            with self._lock:
                announced = self._missing.pop(task_id, None) is not None
            why = (
                "its worker announced it done"
                if announced
                else "no worker holds it and its message has left the queue"
            )
            log.warning("task %s: no result at s3://%s/%s", task_id, cfg.bucket, key)
            self._fail_task(
                task_id,
                ResultMissingError(
                    f"task {task_id} of session {self.session_id} has no result: {why}, "
                    f"but s3://{cfg.bucket}/{key} does not exist after "
                    f"{RESULT_GRACE:g} s (was it deleted, e.g. by a lifecycle rule?)"
                ),
            )

    def _read_claim(self, worker: WorkerRecord) -> dict[str, Any] | None:
        import json

        cfg = self.config
        try:
            obj = self._clients.s3.get_object(
                Bucket=cfg.bucket,
                Key=claim_key(cfg.prefix, self.session_id, worker.task_id),
            )
            return json.loads(obj["Body"].read())
        except Exception as exc:
            log.debug("no claim for worker %s: %s", worker.task_id, exc)
            return None

    def _result_exists(self, task_id: str) -> bool:
        cfg = self.config
        try:
            self._clients.s3.head_object(
                Bucket=cfg.bucket, Key=result_key(cfg.prefix, self.session_id, task_id)
            )
            return True
        except Exception:
            return False

    def _checkpoint(self) -> None:
        cfg = self.config
        self._dirty = False
        self._clients.s3.put_object(
            Bucket=cfg.bucket,
            Key=registry_key(cfg.prefix, self.session_id),
            Body=self.registry.to_json(),
            ContentType="application/json",
        )

    def _close_session(self) -> None:
        """Stop workers, delete the queues, write the registry's final state."""
        self._closing.set()
        try:
            with self._lock:
                detach = (
                    self._may_detach_locked() or self._redetach
                ) and self._broken is None
            if detach:
                self._detach()
                return
            alive = self.registry.alive()
            if alive:
                why = "its budget max_cost was reached" if self._budget_hit else "ended"
                _ecs.stop_tasks(
                    self._clients.ecs,
                    self.config.cluster,
                    [w.arn for w in alive],
                    f"starburst session {self.session_id} {why}",
                )
                self._record_stops(alive)
            cancelled = isinstance(self._broken, SessionCancelledError)
            if self._queues is not None and not cancelled:
                self._queues.delete(self._clients.sqs)
            self.registry.state = (
                "cancelled"
                if cancelled
                else "broken"
                if self._broken
                else "over budget"
                if self._budget_hit
                else "aborted"
                if self._aborted
                else "ended"
            )
            if self._was in ("aborted", "broken", "over budget"):
                # Collecting an ended session's results does not change how
                # it ended.
                self.registry.state = self._was
            self._checkpoint()
            log.info("%s", self._summary(self.registry.state))
        except Exception:
            log.exception(
                "could not clean up session %s; run `starburst-cli cleanup`",
                self.session_id,
            )
        finally:
            self._closed.set()
            self._io.shutdown(wait=False)
            _live_plans.discard(self)

    def _detach(self) -> None:
        """Leave the queues and workers running; write the registry with every
        task id; fail the futures still waiting, pointing at ``attach``."""
        self.registry.state = "detached"
        self._checkpoint()
        sid = self.session_id
        with self._lock:
            sent = len(self.registry.task_ids)
        self._fail_outstanding(
            StarburstError(
                f"session {sid} was detached before this result arrived; collect it "
                f"with Plan.attach({sid!r})"
            )
        )
        log.info(
            "session %s detached: %d task object(s) sent, %d worker(s) "
            "running; collect the results with Plan.attach(%r)",
            sid,
            sent,
            len(self.registry.alive()),
            sid,
        )

    def _summary(self, state: str) -> str:
        """The one log line a session ends with."""
        st = self.status()
        try:
            report = _cost.session_cost(self.registry)
            money = ("about " if report.estimated else "") + f"${report.total:.4f}"
        except ValueError as exc:  # a region without prices
            money = f"unknown ({exc})"
        extra = f"; {self._budget_hit}" if self._budget_hit else ""
        return (
            f"session {self.session_id} {state}: {st.completed} done, "
            f"{st.failed} failed, {st.cancelled} cancelled, "
            f"{len(self.registry.all())} worker(s) in "
            f"{st.wave} wave(s), {time.time() - self.registry.created:.0f} s; "
            f"cost {money}{extra}"
        )

    def _record_stops(self, workers: list[WorkerRecord]) -> None:
        """After StopTask: refresh the records from ECS (waiting up to
        ``STOP_WAIT`` for them to report STOPPED) and give every worker a stop
        time, so the final registry and ``cost()`` do not count them as
        running forever."""
        deadline = time.monotonic() + STOP_WAIT
        waiting = list(workers)
        while waiting:
            try:
                descs = _ecs.describe_tasks(
                    self._clients.ecs, self.config.cluster, [w.arn for w in waiting]
                )
            except Exception as exc:
                log.debug("could not describe the stopped workers: %s", exc)
                break
            by_arn = {d["taskArn"]: d for d in descs}
            for worker in waiting:
                if worker.arn in by_arn:
                    worker.update(by_arn[worker.arn])
            waiting = [w for w in waiting if w.alive and w.arn in by_arn]
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        now = time.time()
        for worker in workers:
            if worker.stopped is None:
                worker.stopped = now
                worker.reason = worker.reason or (
                    f"starburst session {self.session_id} ended"
                )

    # -- collector thread ---------------------------------------------------

    def _collector_main(self) -> None:
        """Collect results as workers announce them on the done queue; list
        the results prefix now and then as well, in case an announcement was
        lost (a worker killed between its PUT and its send)."""
        idle = TICK
        last_list = last_dlq = time.monotonic()
        refused = 0
        try:
            while not self._closed.is_set():
                with self._lock:
                    inflight = sorted(self._inflight)
                if not inflight or self._queues is None:  # None: not opened yet
                    self._closed.wait(TICK)
                    continue
                found = 0
                now = time.monotonic()
                try:
                    if self._queues.done_url:
                        found += self._collect_announced()
                    if not self._queues.done_url or now - last_list >= LIST_INTERVAL:
                        found += self._collect_listed(inflight)
                        last_list = now
                    if now - last_dlq >= DLQ_INTERVAL:
                        self._drain_dlq()
                        last_dlq = now
                except Exception as exc:
                    if not credentials_error(exc):
                        raise
                    refused += 1
                    self._renew_credentials(exc, refused)
                    continue
                refused = 0
                if found:
                    with self._wake:  # room in the queue: let the engine refill it
                        self._wake.notify_all()
                if not self._queues.done_url:
                    idle = TICK if found else min(0.5, idle * 1.5)
                    self._closed.wait(idle)
        except BaseException as exc:
            if self._closing.is_set() and _queue_gone(exc):
                return  # shutdown deleted the queues under a last poll
            self._fail_session(exc, "starburst collector for session %s failed")
        finally:
            self._collector_done.set()

    def _collect_announced(self) -> int:
        assert self._queues is not None
        sqs = self._clients.sqs
        resp = sqs.receive_message(
            QueueUrl=self._queues.done_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = resp.get("Messages", [])
        if not messages:
            return 0
        with self._lock:
            ready = [
                t
                for t in dict.fromkeys(m["Body"] for m in messages)
                if t in self._inflight and t not in self._announced
            ]
            self._announced.update(ready)
        # Fetch and delete on the I/O pool and poll again at once: the
        # announced tasks already count as room for the engine's next
        # dispatch, so sending, running and fetching overlap.
        entries = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(messages)
        ]
        try:
            for task_id in ready:
                self._io.submit(self._fetch_announced, task_id)
            self._io.submit(
                sqs.delete_message_batch,
                QueueUrl=self._queues.done_url,
                Entries=entries,
            )
        except RuntimeError:  # the pool is shut down: the session is closing
            for task_id in ready:
                self._fetch_announced(task_id)
        return len(ready)

    def _fetch_announced(self, task_id: str) -> None:
        try:
            self._fetch_result(task_id)
        except Exception as exc:  # the results listing will find it again
            log.warning("could not fetch the result of task %s: %s", task_id, exc)
        finally:
            with self._lock:
                self._announced.discard(task_id)

    def _collect_listed(self, inflight: list[str]) -> int:
        cfg = self.config
        prefix = results_prefix(cfg.prefix, self.session_id)
        wanted = set(inflight)
        start_after = f"{prefix}{int(inflight[0]) - 1:08d}.msgpack"
        ready: list[str] = []
        paginator = self._clients.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=cfg.bucket, Prefix=prefix, StartAfter=start_after
        ):
            for obj in page.get("Contents", []):
                tid = obj["Key"][len(prefix) :].removesuffix(".msgpack")
                if tid in wanted:
                    ready.append(tid)
        with self._lock:
            ready = [t for t in ready if t in self._inflight]
        if ready:
            list(self._io.map(self._fetch_result, ready))
        return len(ready)

    def _fetch_result(self, task_id: str) -> None:
        cfg = self.config
        key = result_key(cfg.prefix, self.session_id, task_id)
        try:
            data = self._clients.s3.get_object(Bucket=cfg.bucket, Key=key)[
                "Body"
            ].read()
        except Exception as exc:
            if error_code(exc) not in ("NoSuchKey", "404", "NotFound"):
                raise
            # Announced but absent: _check_missing fails it after RESULT_GRACE.
            with self._lock:
                self._missing.setdefault(task_id, time.monotonic())
            return
        bad: Exception | None = None
        try:
            env = envelope.unpack(data, "result")
            outcomes = envelope.result_outcomes(env)
        except Exception as exc:
            env, outcomes, bad = {}, [], exc
        with self._lock:
            self._missing.pop(task_id, None)
            task = self._inflight.pop(task_id, None)
            if task is None:
                return  # already resolved: a retry wrote the same result again
            if task.group is not None and outcomes:
                # In the step that frees the task's room in the queue, so the
                # next chunk of its group is sized from this measurement.
                self._measure_locked(task.group, outcomes)
        n = len(task.futures)
        if bad is not None:
            self._settle(task.futures, [bad] * n, running=n)
            return
        if len(outcomes) != len(task.futures):
            if len(outcomes) == 1 and not outcomes[0].ok:  # the whole task failed
                outcomes = outcomes * len(task.futures)
            else:
                err = ResultMissingError(
                    f"result {key} has {len(outcomes)} item(s), task had "
                    f"{len(task.futures)}"
                )
                self._settle(task.futures, [err] * n, running=n)
                return
        worker = str(env.get("worker", "?")).rsplit("/", 1)[-1]
        settled: list[tuple[Future, bool, Any]] = []
        for future, outcome in zip(task.futures, outcomes, strict=True):
            if outcome.ok:
                try:
                    settled.append((future, True, outcome.value()))
                except Exception as exc:
                    settled.append(
                        (
                            future,
                            False,
                            RemoteError(
                                type(exc).__name__,
                                f"the result could not be unpickled here: {exc}",
                            ),
                        )
                    )
            else:
                settled.append(
                    (
                        future,
                        False,
                        _rebuild_exception(
                            outcome, task_id, worker, env.get("attempt", 1)
                        ),
                    )
                )
        n_ok = sum(1 for _, ok, _ in settled if ok)
        # Count before completing the futures: status() always adds up, and a
        # caller woken by a future already sees it counted.
        with self._lock:
            self._counters.items_running -= n
            self._counters.completed += n_ok
            self._counters.failed += n - n_ok
        for future, ok, value in settled:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _measure_locked(self, group: _Group, outcomes: list[envelope.Outcome]) -> None:
        """Fold a task's mean seconds per item into its group's average."""
        measured = sum(o.seconds for o in outcomes) / len(outcomes)
        old = group.item_seconds
        group.item_seconds = measured if old is None else 0.7 * old + 0.3 * measured
        self._item_seconds[group.fn_name] = group.item_seconds

    def _drain_dlq(self) -> None:
        assert self._queues is not None
        sqs = self._clients.sqs
        resp = sqs.receive_message(
            QueueUrl=self._queues.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        for message in resp.get("Messages", []):
            task_id = message["Body"]
            if not self._result_exists(task_id):
                with self._lock:
                    reason = self._counters.last_stop_reason
                self._fail_task(
                    task_id,
                    WorkerLostError(
                        f"task {task_id} was received {dlq_receives(self._settings.max_attempts)} "
                        f"time(s) without producing a result (max_attempts="
                        f"{self._settings.max_attempts})"
                        + (f"; the last worker stop: {reason}" if reason else "")
                    ),
                )
            sqs.delete_message(
                QueueUrl=self._queues.dlq_url, ReceiptHandle=message["ReceiptHandle"]
            )

    # -- completing futures -------------------------------------------------

    def _settle(
        self, futures: list[Future], errors: list[BaseException], running: int = 0
    ) -> None:
        with self._lock:
            self._counters.items_running -= running
            self._counters.failed += len(futures)
        for f, err in zip(futures, errors, strict=True):
            if not f.done():
                f.set_exception(err)

    def _fail_task(self, task_id: str, exc: BaseException) -> None:
        with self._lock:
            task = self._inflight.pop(task_id, None)
            if task is None:
                return
        self._settle(task.futures, [exc] * len(task.futures), running=len(task.futures))

    def _fail_outstanding(self, exc: BaseException) -> None:
        with self._lock:
            tasks = list(self._inflight.values())
            if self._pending:
                tasks.append(
                    _Task("", "", None, [f for f, _, _ in self._pending], None)
                )
            for item in self._pending:
                item[2].remaining -= 1
            self._pending.clear()
            self._pending_bytes = 0
            self._inflight.clear()
            self._counters.items_pending = self._counters.items_running = 0
            self._wake.notify_all()
        failed = cancelled = 0
        for task in tasks:
            for f in task.futures:
                if f.done():
                    cancelled += f.cancelled()
                elif f.running() or f.set_running_or_notify_cancel():
                    f.set_exception(exc)
                    failed += 1
                else:
                    cancelled += 1
        with self._lock:
            self._counters.failed += failed
            self._counters.cancelled += cancelled

    def _fail_session(self, exc: BaseException, what: str) -> None:
        """A thread of the plan failed with ``exc``: say why, fail the rest.

        The session's queue vanishing means someone ended the session from
        outside: ``starburst-cli cancel`` (the registry says ``cancelled``;
        the futures raise ``SessionCancelledError``) or a deletion by hand.
        """
        if self._broken is not None:  # another thread is failing it already
            log.debug("session %s: %s after it failed", self.session_id, exc)
            self._break(exc)
            return
        if _queue_gone(exc):
            state = self._registry_state()
            if state == "cancelled":
                why = (
                    f"session {self.session_id} was cancelled from outside the "
                    "plan (`starburst-cli cancel`): its workers were stopped and "
                    "its queues deleted before this call finished"
                )
                log.warning("%s", why)
                self._break(SessionCancelledError(why))
                return
            exc = StarburstError(
                f"the queues of session {self.session_id} were deleted while the "
                f"plan ran (session state in session.json: {state}); SQS said: {exc}"
            )
        log.exception(what, self.session_id)
        self._break(exc)

    def _registry_state(self) -> str:
        """``cancelled`` if ``starburst-cli cancel`` marked the session, else
        the state session.json holds now (another process may have set it)."""
        cfg = self.config
        s3 = self._clients.s3
        try:
            if _exists(s3, cfg.bucket, cancel_key(cfg.prefix, self.session_id)):
                return "cancelled"
            data = s3.get_object(
                Bucket=cfg.bucket, Key=registry_key(cfg.prefix, self.session_id)
            )["Body"].read()
            return Registry.from_json(data).state
        except Exception as exc:
            return f"unreadable ({exc})"

    def _break(self, exc: BaseException) -> None:
        with self._wake:
            if self._broken is None:
                self._broken = exc
            self._shutdown = True
            self._wake.notify_all()
        if isinstance(exc, SessionCancelledError):
            self._fail_outstanding(exc)
            return
        broken = BrokenPlan(f"starburst session {self.session_id} failed: {exc}")
        broken.__cause__ = exc
        self._fail_outstanding(broken)

    def _abort(self, why: str) -> None:
        if self._attached and self._was == "detached":
            self._leave_detached(why)
            return
        with self._wake:
            self._aborted = True
            self._shutdown = True
            self._cancel_pending_locked()
            self._wake.notify_all()
            engine = self._engine
        self._fail_outstanding(StarburstError(f"the task was stopped because {why}"))
        if engine is not None:
            self._wait_closed()
        else:
            self._io.shutdown(wait=False)

    def _leave_detached(self, why: str) -> None:
        """An attached plan of a detached session stops collecting (Ctrl-C,
        SIGTERM, an error in its with-block) and leaves the session as it found
        it: detached, its queues and workers going on, for a later attach."""
        sid = self.session_id
        with self._wake:
            self._redetach = True
            self._shutdown = True
            self._wake.notify_all()
            engine = self._engine
        self._fail_outstanding(
            StarburstError(
                f"stopped waiting because {why}; session {sid} is still detached "
                f"and its workers go on: collect the result with "
                f"Plan.attach({sid!r}), or stop the session with "
                f"`starburst-cli cancel {sid}`"
            )
        )
        if engine is not None:
            self._wait_closed()
        else:
            self._io.shutdown(wait=False)
        log.warning(
            "session %s left detached (%s): its workers go on; collect the "
            "results with Plan.attach(%r) or stop it with `starburst-cli cancel %s`",
            sid,
            why,
            sid,
            sid,
        )


# ---------------------------------------------------------------------------
# helpers


_live_plans: weakref.WeakSet[Plan] = weakref.WeakSet()


_terminating = False  # SIGTERM arrived while plans ran


def _gone_because(state: str) -> str:
    """Why an attached session's queue is gone, from its state before attach."""
    return {
        "aborted": "the session was aborted (its client was interrupted, got "
        "SIGTERM or raised in its with-block), which stopped its workers and "
        "deleted its queues",
        "over budget": "the session reached its max_cost, which stopped it",
        "broken": "the session failed (see its client's log) and was stopped",
        "cancelled": "the session was cancelled (`starburst-cli cancel`)",
    }.get(state, "the session ended or was cancelled")


def _interrupted(exc: BaseException) -> str:
    """Why a plan was aborted while its client waited for it to finish."""
    if _terminating:
        return "the client process received SIGTERM"
    if isinstance(exc, KeyboardInterrupt):
        return "the client was interrupted (KeyboardInterrupt)"
    return f"the client raised {type(exc).__name__} while waiting for the plan"


def _at_exit() -> None:
    # Like ThreadPoolExecutor: a plan never shut down finishes its work first,
    # unless the process was told to terminate: then its workers are stopped.
    for plan in list(_live_plans):
        if _terminating:
            plan._abort("the client process received SIGTERM")
        else:
            plan.shutdown(wait=True)


def _handle_sigterm() -> None:
    """Make SIGTERM (``kill``, ``timeout``, a CI job's cancel) unwind the
    program like Ctrl-C does, so that its plans stop their workers and delete
    their queues instead of leaving them to bill. Only where the program keeps
    Python's default (death without cleanup), from the main thread; with no
    plan running, the signal does what it did before."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        return


def _on_sigterm(signum: int, frame: Any) -> None:
    global _terminating
    if not _live_plans:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _terminating = True
    plans = list(_live_plans)
    kept = sum(1 for p in plans if p._attached and p._was == "detached")
    log.warning(
        "SIGTERM: stopping the workers of %d plan(s)%s",
        len(plans) - kept,
        f", leaving {kept} detached session(s) running" if kept else "",
    )
    raise SystemExit(128 + signum)


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
# A process forked while plans run (multiprocessing, a ProcessPoolExecutor in
# the with-block) has none of their threads: at its exit it must not wait for
# them, nor stop their workers.
os.register_at_fork(after_in_child=_live_plans.clear)


def _time_calls(fn: Callable[..., Any], sample: Iterable[Any]) -> tuple[float, str]:
    """Mean seconds of up to ``SAMPLE_CALLS`` local calls of ``fn``, and a
    line saying so for the estimate's assumptions."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    times: list[float] = []
    for item in itertools.islice(sample, SAMPLE_CALLS):
        args = item if isinstance(item, tuple) else (item,)
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    if not times:
        raise ValueError("sample is empty: give a few inputs for fn to time")
    mean = sum(times) / len(times)
    return mean, (
        f"{mean:.3g} s per task, the mean of {len(times)} local call(s) of "
        f"{envelope.qualified_name(fn)} (a Fargate vCPU may be slower or "
        "faster than this machine)"
    )


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def _queue_gone(exc: BaseException) -> bool:
    """Is ``exc`` SQS saying the queue does not exist?"""
    return error_code(exc) in (
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NonExistentQueue",
    )


def _unregistered_tasks(
    s3: Any, config: DeploymentConfig, registry: Registry
) -> list[tuple[str, int]]:
    """(task id, items) of the task objects of a session that its registry
    does not list: those its client sent after it last wrote session.json."""
    prefix = f"{config.prefix}sessions/{registry.session_id}/tasks/"
    known = set(registry.task_ids)
    found: list[tuple[str, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=config.bucket, Prefix=prefix
    ):
        for obj in page.get("Contents", []):
            task_id = obj["Key"][len(prefix) :].removesuffix(".msgpack")
            if task_id in known or not task_id.isdigit():
                continue
            data = s3.get_object(Bucket=config.bucket, Key=obj["Key"])["Body"].read()
            try:
                n = int(envelope.unpack(data, "task")["n"])
            except (envelope.EnvelopeError, KeyError, TypeError, ValueError) as exc:
                log.warning(
                    "skipping the unreadable task object %s: %s", obj["Key"], exc
                )
                continue
            found.append((task_id, n))
    return found


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")


def _check_number(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not lo <= value <= hi:  # NaN fails too
        raise ValueError(f"{name} must be from {lo:g} to {hi:,.0f}, got {value!r}")


def _pickle_call(obj: Any, fn: Any) -> bytes:
    ship_local_modules(fn)
    try:
        return envelope.dumps(obj)
    except Exception as exc:
        what = envelope.describe_unpicklable(obj, exc)
        raise TypeError(
            f"cannot send {envelope.qualified_name(fn)} to a worker: {what}. Pass "
            "data the worker can rebuild (e.g. a file path instead of an open file, "
            "or create the client/connection inside the function)"
        ) from None


def _result_or_cancel(future: Future, timeout: float | None = None) -> Any:
    try:
        try:
            return future.result(timeout)
        except FuturesTimeout:
            raise TimeoutError("map() did not finish within its timeout") from None
    finally:
        future.cancel()


def _rebuild_exception(
    outcome: envelope.Outcome, task_id: str, worker: str, attempt: Any
) -> BaseException:
    exc: BaseException | None = None
    if outcome.blob is not None:
        try:
            exc = outcome.value()
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(
            outcome.error_type or "Exception",
            outcome.error_text or "",
            outcome.traceback or "",
        )
    if outcome.traceback:
        exc.__cause__ = RemoteTraceback(_with_local_source(outcome.traceback))
    exc.add_note(
        f"raised in starburst task {task_id} on worker {worker} (attempt {attempt})"
    )
    hint = _local_module_hint(f"{outcome.error_text or ''} {exc}")
    if hint:
        exc.add_note(hint)
    return exc


_NO_MODULE = re.compile(r"No module named '([\w.]+)'")


def _local_module_hint(text: str) -> str:
    """What to do when a worker could not import one of the user's local
    modules: they are not files there; they travel by value inside the
    pickled function and arguments, and only if this process imported them."""
    from ._modules import local_but_not_shipped, shipped_by_value

    for name in _NO_MODULE.findall(text):
        if local_but_not_shipped(name):
            return (
                f"{name!r} is one of your own modules, not installed in the worker "
                "image, and this process had not imported it when it sent the "
                f"call, so it did not travel with it: `import {name}` at the top "
                "of your script (not inside the function), and it is sent by "
                "value with each call"
            )
        if shipped_by_value(name):
            return (
                f"{name!r} is one of your own modules, not installed in the worker "
                "image: it travels by value inside each call's function and "
                f"arguments, so a module-level `import {name}` in your script "
                f"works, but an `import {name}` that runs on the worker (inside "
                "the function, or in a process the call starts: multiprocessing, "
                "joblib or scikit-learn n_jobs, subprocess) cannot find it. "
                "Import it at module level, use threads for parallel work inside "
                "a call (joblib's prefer='threads', a ThreadPoolExecutor), or put "
                "the code in a package the worker image installs"
            )
    return ""


_FRAME = re.compile(r'^(\s*)File "([^"]+)", line (\d+), in ')


def _with_local_source(tb_text: str) -> str:
    """A remote traceback with the source lines the worker could not show:
    frames in this machine's files (the user's own modules travel by value,
    so the worker has no copy of them) get their line, as a local one would."""
    lines = tb_text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        m = _FRAME.match(line)
        if not m:
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if following.startswith(m.group(1) + "  ") and not _FRAME.match(following):
            continue  # the worker had the source
        source = linecache.getline(m.group(2), int(m.group(3))).strip()
        if source:
            out.append(f"{m.group(1)}  {source}")
    return "\n".join(out) + ("\n" if tb_text.endswith("\n") else "")


def _launch_failure_kind(failure: dict[str, Any]) -> str:
    """ "capacity", "limit" or "other", from a RunTask failure's reason."""
    text = f"{failure.get('reason', '')} {failure.get('detail', '')}".lower()
    if "capacity" in text:
        return "capacity"
    if "limit" in text or "throttl" in text:
        return "limit"
    return "other"


def _launch_hint(kinds: set[str]) -> str:
    if "limit" in kinds:
        return (
            "Ask for a higher Fargate limit in the Service Quotas console, or "
            "lower Plan(workers=...)"
        )
    if "capacity" in kinds:
        return (
            "Try again later, add subnets in other availability zones, or "
            "use On-Demand (spot=False, or spot_fallback=True)"
        )
    return "Check the deployment's task definition, subnets and security groups"


def dlq_receives(max_attempts: int) -> int:
    """The receives after which SQS moves a task to the dead-letter queue.

    Twice ``max_attempts``: a worker fetches its next task ahead, so a task
    can be received by workers that die without running it. While a client
    is attached it counts the runs lost (``_recover``) and fails a task at
    ``max_attempts``; the dead-letter queue is the limit when none is.
    """
    return 2 * max_attempts


def _stop_description(
    worker: WorkerRecord, memory_mib: int | None = None, session: str = "SESSION"
) -> str:
    parts = [p for p in (worker.stop_code, worker.reason) if p]
    if worker.exit_code not in (None, 0):
        parts.append(f"exit code {worker.exit_code}")
    text = ", ".join(parts) or "no reason given"
    if worker.stop_code == "TaskFailedToStart":
        text += f" ({_HINTS['TaskFailedToStart']})"
    elif "OutOfMemory" in (worker.reason or ""):
        hint = _HINTS["OutOfMemory"]
        if memory_mib:
            hint = hint.replace("memory;", f"memory (memory={memory_mib} MiB);")
        text += f" ({hint})"
    elif worker.stop_code == "SpotInterruption":
        text += f" ({_HINTS['SpotInterruption']})"
    elif worker.exit_code == 137:
        text += f" ({_HINTS['SIGKILL']})"
    elif worker.exit_code is not None and worker.exit_code != 0:
        meaning = _exit_code_meaning(worker.exit_code)
        text += " (" + meaning.format(session=session, worker=worker.task_id) + ")"
    return text


def _exit_code_meaning(code: int) -> str:
    """What a worker's container exit code (other than 0 and 137) says."""
    if code == 1:
        return (
            "the worker failed; its log says why: starburst-cli logs {session} "
            "--worker {worker}"
        )
    if code == 128 + signal.SIGSEGV:
        return (
            "the worker crashed with SIGSEGV, a segmentation fault: usually C "
            "code (an extension module, ctypes, a native library) the call ran"
        )
    if code == 128 + signal.SIGABRT:
        return (
            "the worker aborted (SIGABRT): usually a failed check in C code the "
            "call ran"
        )
    if code == 128 + signal.SIGTERM:
        return (
            "the worker was sent SIGTERM (StopTask, a Spot interruption or a kill "
            "from outside) and the call it ran was cut short"
        )
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"the worker was killed by {name}"
    return (
        f"the worker process exited with code {code} while running a call: the "
        "function, or a library it called, ended the process (os._exit, or a C "
        "library's exit)"
    )


__all__ = ["Plan", "PlanStatus"]
