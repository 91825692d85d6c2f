"""The task driver: runs each task moto's RunTask created as a local worker process.

Flow. :func:`install_hooks` wraps moto's ECS backend so that, while a :class:`Driver`
is active in this process, RunTask hands every new task to it (the task starts in
PROVISIONING with ``createdAt``) and StopTask asks it to stop the task instead of
marking it STOPPED at once. The driver thread then ticks every ``poll`` seconds:

PROVISIONING -> PENDING (``pullStartedAt``) -> after ``cold_start`` s: a pending
start-failure fault stops the task (TaskFailedToStart), else the process is spawned
-> RUNNING (``startedAt``). While it runs the driver checks its exit, its memory
(process tree RSS, via psutil, against the task/container memory in MiB: over it the
tree is SIGKILLed -> 137 + OutOfMemoryError), stop requests (StopTask, Spot
interruption: SIGTERM, SIGKILL after the grace) and kill faults. On exit:
DEPROVISIONING (``stoppingAt``, ``executionStoppedAt``, container ``exitCode``,
``reason``) -> STOPPED (``stoppedAt``, ``stopCode``, ``stoppedReason``).

Container mode (``Driver(docker_host=...)``): instead of a local process, a task whose
image names a registry (``127.0.0.1:5001/repo@sha256:...``; a bare name such as the
local cloud's process-mode placeholder still runs as a process) runs as ``docker run --network host`` of the task definition's image (pulled from
the local registry while the task is PENDING; a failed pull stops the task with
``CannotPullContainerError``), with the task's environment and overrides, the task's
memory as ``--memory`` and its CPU as ``--cpus``. The engine enforces the memory:
an out-of-memory kill (exit 137, ``OOMKilled``) is reported exactly as in process
mode. StopTask and faults signal the container through the engine. Process mode
stays the default.

All times are real datetimes set on moto's own task objects, which moto's serializer
reads by attribute name, so DescribeTasks shows them.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from .faults import SPOT_REASON, Fault, FaultBook
from .logship import LogShipper, Stream, awslogs_target

log = logging.getLogger("starburst.local")

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
ESSENTIAL_EXITED = "Essential container in task exited"
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER")
MAX_RUN_TASK_COUNT = 10

_active: Driver | None = None
_hooks_installed = False


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LocalTask:
    """The driver's view of one ECS task."""

    task: Any  # moto's ecs.models.Task
    arn: str
    id: str
    family: str
    revision: int
    container_name: str
    container_def: dict[str, Any]
    memory_mib: int | None
    cpu_units: int | None
    env: dict[str, str]
    command: list[str]
    stop_grace: float
    phase: str = "PROVISIONING"
    run_at: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None
    log_path: Path | None = None
    stop_code: str | None = None
    stop_reason: str | None = None
    kill_deadline: float | None = None
    exit_override: int | None = None
    container_reason: str | None = None
    image: str = ""  # set only when the task runs as a container
    pull: threading.Thread | None = None
    pull_error: str | None = None
    faults: list[tuple[float, Fault]] = field(default_factory=list)

    def metadata(self, runner_url: str) -> dict[str, Any]:
        """Task metadata like Fargate's endpoint v4 ``/task``."""
        t = self.task
        return {
            "Cluster": t.cluster_arn,
            "TaskARN": self.arn,
            "Family": self.family,
            "Revision": str(self.revision),
            "DesiredStatus": t.desired_status,
            "KnownStatus": t.last_status,
            "Limits": {
                "CPU": (self.cpu_units or 256) / 1024,
                "Memory": self.memory_mib,
            },
            "LaunchType": "FARGATE",
            "AvailabilityZone": f"{t.region_name}a",
            "Containers": [self.container_metadata()],
        }

    def container_metadata(self) -> dict[str, Any]:
        return {
            "DockerId": self.id,
            "Name": self.container_name,
            "Image": self.container_def.get("image", ""),
            "Labels": {
                "com.amazonaws.ecs.task-arn": self.arn,
                "com.amazonaws.ecs.container-name": self.container_name,
            },
            "DesiredStatus": self.task.desired_status,
            "KnownStatus": self.task.last_status,
        }


def install_hooks() -> None:
    """Wrap moto's ECS backend RunTask / StopTask (once per process)."""
    global _hooks_installed
    if _hooks_installed:
        return
    from moto.ecs.models import EC2ContainerServiceBackend

    orig_run = EC2ContainerServiceBackend.run_task
    orig_stop = EC2ContainerServiceBackend.stop_task
    run_sig = inspect.signature(orig_run)

    def run_task(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = run_sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        params = bound.arguments
        driver = _active
        if driver is not None and (params["count"] or 1) > MAX_RUN_TASK_COUNT:
            from moto.ecs.exceptions import InvalidParameterException

            raise InvalidParameterException(
                f"count must be between 1 and {MAX_RUN_TASK_COUNT}"
            )
        tasks = orig_run(self, *args, **kwargs)
        if driver is not None:
            for task in tasks:
                driver.adopt(self, task, params)
        return tasks

    def stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        driver = _active
        if driver is None:
            return orig_stop(self, cluster_str, task_str, reason)
        cluster = self._get_cluster(cluster_str)
        task_id = task_str.split("/")[-1]
        for arn, task in self.tasks.get(cluster.name, {}).items():
            if arn.endswith("/" + task_id):
                driver.request_stop(
                    arn, "UserInitiated", reason or "Task stopped by user"
                )
                return task
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException("The referenced task was not found.")

    # moto quirk: an ENI in a VPC without enableDnsHostnames has no private_dns_name
    # attribute at all, and RunTask (awsvpc) then fails with a 500.
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    if not hasattr(NetworkInterface, "private_dns_name"):
        NetworkInterface.private_dns_name = None  # type: ignore[attr-defined]
    EC2ContainerServiceBackend.run_task = run_task  # type: ignore[method-assign]
    EC2ContainerServiceBackend.stop_task = stop_task  # type: ignore[method-assign]
    _hooks_installed = True


def _set_pdeathsig() -> None:  # runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class Driver:
    """Drives the lifecycle of every task RunTask creates, as local processes."""

    def __init__(
        self,
        state_dir: Path,
        runner_url: str = "",
        *,
        cold_start: float = 0.0,
        stop_grace: float = 10.0,
        poll: float = 0.1,
        extra_env: dict[str, str] | None = None,
        ship_logs: bool = True,
        docker_host: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.tasks_dir = self.state_dir / "tasks"
        self.runner_url = runner_url
        self.cold_start = cold_start
        self.stop_grace = stop_grace
        self.poll = poll
        self.extra_env = dict(extra_env or {})
        #: Container mode when set: the engine's ``DOCKER_HOST`` (``unix://...``).
        self.docker_host = docker_host or None
        self.faults = FaultBook()
        self.shipper = LogShipper() if ship_logs else None
        self._tasks: dict[str, LocalTask] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="starburst-driver", daemon=True
        )
        self.started_count = 0

    # -- lifecycle of the driver itself -------------------------------------------
    def start(self) -> None:
        global _active
        install_hooks()
        from moto.moto_api import state_manager

        # moto would otherwise advance lastStatus on every DescribeTasks.
        state_manager.set_transition(
            model_name="ecs::task",
            transition={"progression": "manual", "times": 1_000_000_000},
        )
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        _active = self
        if self.shipper:
            self.shipper.start()
        self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        """Stop every task (SIGTERM, SIGKILL after ``grace``), then the thread."""
        global _active
        for arn in self.arns():
            self.request_stop(
                arn, "UserInitiated", "The local runner is shutting down", grace=grace
            )
        deadline = time.monotonic() + grace + 2
        while time.monotonic() < deadline and self.running():
            time.sleep(self.poll)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for lt in self.snapshot():
            if lt.proc and lt.proc.poll() is None:
                self._kill_tree(lt)
        if _active is self:
            _active = None
        if self.shipper:
            self.shipper.stop()

    def arns(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def snapshot(self) -> list[LocalTask]:
        with self._lock:
            return list(self._tasks.values())

    def running(self) -> list[LocalTask]:
        return [lt for lt in self.snapshot() if lt.phase != "STOPPED"]

    def get(self, task: str) -> LocalTask | None:
        with self._lock:
            if task in self._tasks:
                return self._tasks[task]
            for arn, lt in self._tasks.items():
                if arn.endswith("/" + task):
                    return lt
        return None

    # -- called from moto's request threads ------------------------------------------
    def adopt(self, backend: Any, task: Any, params: dict[str, Any]) -> None:
        """Take over a task RunTask just created: PROVISIONING, createdAt, resources."""
        taskdef = backend.describe_task_definition(task.task_definition_arn)
        cdef = taskdef.container_definitions[0]
        name = cdef.get("name", "main")
        override = next(
            (
                o
                for o in (task.overrides or {}).get("containerOverrides", [])
                if o.get("name") in (None, name)
            ),
            {},
        )
        memory = (
            _int((task.overrides or {}).get("memory"))
            or _int(taskdef.memory)
            or _int(override.get("memory"))
            or _int(cdef.get("memory"))
        )
        cpu = _int((task.overrides or {}).get("cpu")) or _int(taskdef.cpu)
        strategy = params.get("capacity_provider_strategy") or []
        task.capacity_provider_name = task.capacity_provider_name or (
            strategy[0]["capacityProvider"] if strategy else "FARGATE"
        )
        task.launch_type = params.get("launch_type") or ""
        task.created_at = _now()
        task.last_status = "PROVISIONING"
        task.desired_status = "RUNNING"
        task.cpu = str(cpu) if cpu else None
        task.memory = str(memory) if memory else None
        task.version = 1
        for container in task.containers:
            container.last_status = "PENDING"
            container.exitCode = None
            container.runtime_id = task.id
        lt = LocalTask(
            task=task,
            arn=task.task_arn,
            id=task.id,
            family=taskdef.family,
            revision=taskdef.revision,
            container_name=name,
            container_def=cdef,
            memory_mib=memory,
            cpu_units=cpu,
            env=self._environment(task, cdef, override),
            command=(
                self._container_command(cdef, override)
                if self._in_container(cdef)
                else self._command(cdef, override)
            ),
            image=str(cdef.get("image") or "") if self._in_container(cdef) else "",
            stop_grace=float(cdef.get("stopTimeout") or self.stop_grace),
        )
        with self._lock:
            self._tasks[lt.arn] = lt

    def request_stop(
        self, task: str, code: str, reason: str, grace: float | None = None
    ) -> bool:
        """Ask a task to stop (SIGTERM now, SIGKILL after the grace)."""
        lt = self.get(task)
        if lt is None or lt.phase in ("DEPROVISIONING", "STOPPED"):
            return False
        with self._lock:
            if lt.stop_code is None:
                lt.stop_code, lt.stop_reason = code, reason
            lt.task.desired_status = "STOPPED"
            if lt.proc is not None and lt.kill_deadline is None:
                self._terminate(lt, lt.stop_grace if grace is None else grace)
        return True

    # -- environment and command -------------------------------------------------
    def _environment(
        self, task: Any, cdef: dict[str, Any], override: dict[str, Any]
    ) -> dict[str, str]:
        env = (
            {}
            if self._in_container(cdef)
            else {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        )
        env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
        env.update(self.extra_env)
        for pair in (cdef.get("environment") or []) + (
            override.get("environment") or []
        ):
            env[str(pair["name"])] = str(pair.get("value", ""))
        env["ECS_CONTAINER_METADATA_URI_V4"] = (
            f"{self.runner_url}/_starburst/metadata/{task.id}"
        )
        env.setdefault("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE")
        return env

    @staticmethod
    def _command(cdef: dict[str, Any], override: dict[str, Any]) -> list[str]:
        command = list(override.get("command") or cdef.get("command") or [])
        entry = list(cdef.get("entryPoint") or [])
        argv = entry + command if entry else command
        if not argv:
            return [sys.executable, "-m", "starburst_worker"]
        if os.path.basename(argv[0]) in ("python", "python3") or argv[0].startswith(
            "python3."
        ):
            argv[0] = sys.executable
        return argv

    @staticmethod
    def _container_command(cdef: dict[str, Any], override: dict[str, Any]) -> list[str]:
        """``[entrypoint or ""] + args``: what follows the image in ``docker run``."""
        command = list(override.get("command") or cdef.get("command") or [])
        entry = list(cdef.get("entryPoint") or [])
        return [entry[0], *entry[1:], *command] if entry else ["", *command]

    # -- the driver thread ---------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            for lt in self.snapshot():
                try:
                    self._tick(lt)
                except Exception:  # one broken task must not stop the others
                    log.exception("driving task %s failed", lt.arn)
                    self._fail_start(
                        lt, "CannotStartContainerError: local runner error"
                    )
            self._stop.wait(self.poll)

    def _tick(self, lt: LocalTask) -> None:
        now = time.monotonic()
        if lt.phase == "PROVISIONING":
            if lt.stop_code:
                return self._finish(lt, None)
            lt.phase = lt.task.last_status = "PENDING"
            lt.task.pull_started_at = _now()
            lt.run_at = now + self.cold_start
        elif lt.phase == "PENDING":
            if lt.stop_code:
                return self._finish(lt, None)
            if now >= lt.run_at:
                self._launch(lt)
        elif lt.phase in ("RUNNING", "STOPPING"):
            self._watch(lt, now)
        elif lt.phase == "DEPROVISIONING":
            self._finish(lt, None)

    def _launch(self, lt: LocalTask) -> None:
        if lt.image and not self._pulled(lt):
            return None
        fault = self.faults.take_start_failure()
        if fault is not None:
            return self._fail_start(lt, fault.reason)
        lt.log_path = self.tasks_dir / f"{lt.id}.log"
        cwd = self.tasks_dir / lt.id
        cwd.mkdir(parents=True, exist_ok=True)
        argv, env = lt.command, lt.env
        if lt.image:
            argv, env = self._docker_run(lt, cwd), self._docker_env()
        try:
            with open(lt.log_path, "ab") as out:
                lt.proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_set_pdeathsig if sys.platform == "linux" else None,
                )
        except OSError as exc:
            return self._fail_start(lt, f"CannotStartContainerError: {exc}")
        with contextlib.suppress(psutil.Error):
            lt.ps = psutil.Process(lt.proc.pid)
        self.started_count += 1
        self._ship(lt)
        t = lt.task
        t.pull_stopped_at = t.started_at = _now()
        t.connectivity, t.connectivity_at = "CONNECTED", t.started_at
        lt.phase = t.last_status = "RUNNING"
        for container in t.containers:
            container.last_status = "RUNNING"
        now = time.monotonic()
        lt.faults += [
            (now + f.after, f) for f in self.faults.take_for_task(lt.arn, True)
        ]
        log.info("task %s running as pid %d: %s", lt.id, lt.proc.pid, lt.command)
        if lt.stop_code:  # StopTask arrived while it was starting
            self._terminate(lt, lt.stop_grace)

    def _ship(self, lt: LocalTask) -> None:
        if not self.shipper or lt.log_path is None:
            return
        target = awslogs_target(
            lt.container_def, lt.container_name, lt.id, lt.task.region_name
        )
        if target:
            group, stream, region, create = target
            self.shipper.add(lt.arn, Stream(lt.log_path, group, stream, region, create))

    def _watch(self, lt: LocalTask, now: float) -> None:
        assert lt.proc is not None
        code = lt.proc.poll()
        if code is not None:
            return self._exited(lt, code)
        lt.faults += [
            (now + f.after, f) for f in self.faults.take_for_task(lt.arn, False)
        ]
        for due, fault in list(lt.faults):
            if now >= due:
                lt.faults.remove((due, fault))
                self._apply(lt, fault)
        if lt.kill_deadline is not None and now >= lt.kill_deadline:
            self._kill_tree(lt)
            lt.kill_deadline = float("inf")
        elif lt.image:
            return None  # the engine enforces --memory; _exited reads OOMKilled
        elif lt.memory_mib and self._rss(lt) > lt.memory_mib * 1024 * 1024:
            log.info("task %s exceeded %d MiB: killing it", lt.id, lt.memory_mib)
            lt.exit_override, lt.container_reason = 137, OOM_REASON
            self._kill_tree(lt)

    def _apply(self, lt: LocalTask, fault: Fault) -> None:
        log.info("injecting fault %s into task %s", fault.kind, lt.id)
        if fault.kind == "kill":
            lt.exit_override = fault.exit_code
            lt.container_reason = fault.reason or None
            self._kill_tree(lt)
        elif fault.kind == "spot_interruption":
            lt.stop_code, lt.stop_reason = "SpotInterruption", SPOT_REASON
            lt.task.desired_status = "STOPPED"
            self._terminate(lt, lt.stop_grace)

    def _terminate(self, lt: LocalTask, grace: float) -> None:
        lt.phase = lt.task.last_status = (
            "STOPPING" if lt.phase == "RUNNING" else lt.phase
        )
        lt.task.stopping_at = _now()
        lt.kill_deadline = time.monotonic() + grace
        if lt.proc is not None and lt.image:
            self._docker("kill", "--signal", "TERM", self._container_name(lt))
        elif lt.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                lt.proc.send_signal(signal.SIGTERM)

    @staticmethod
    def _tree(lt: LocalTask) -> list[psutil.Process]:
        if lt.ps is None:
            return []
        try:
            return [lt.ps, *lt.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def _rss(self, lt: LocalTask) -> int:
        total = 0
        for proc in self._tree(lt):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _kill_tree(self, lt: LocalTask) -> None:
        if lt.image and lt.proc is not None:
            # The attached `docker run` exits once the container is dead.
            done = self._docker("kill", "--signal", "KILL", self._container_name(lt))
            if done.returncode == 0:
                return
        procs = self._tree(lt)
        if lt.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(lt.proc.pid, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def _exited(self, lt: LocalTask, code: int) -> None:
        t = lt.task
        if lt.image:
            code = self._container_exit(lt, code)
        exit_code = (
            lt.exit_override
            if lt.exit_override is not None
            else (128 - code if code < 0 else code)
        )
        now = _now()
        t.stopping_at = getattr(t, "stopping_at", None) or now
        t.execution_stopped_at = now
        for container in t.containers:
            container.last_status = "STOPPED"
            container.exitCode = exit_code
            if lt.container_reason:
                container.reason = lt.container_reason
        if lt.stop_code is None:
            lt.stop_code, lt.stop_reason = "EssentialContainerExited", ESSENTIAL_EXITED
        t.desired_status = "STOPPED"
        lt.phase = t.last_status = "DEPROVISIONING"
        if self.shipper:
            self.shipper.finish(lt.arn)
        log.info("task %s exited with %d (%s)", lt.id, exit_code, lt.stop_code)

    def _fail_start(self, lt: LocalTask, reason: str) -> None:
        lt.stop_code, lt.stop_reason = "TaskFailedToStart", reason
        for container in lt.task.containers:
            container.reason = reason
        self._finish(lt, reason)

    def _finish(self, lt: LocalTask, _reason: str | None) -> None:
        t = lt.task
        now = _now()
        t.stopping_at = getattr(t, "stopping_at", None) or now
        t.stopped_at = now
        t.stop_code = lt.stop_code or "UserInitiated"
        t.stopped_reason = lt.stop_reason or ""
        t.desired_status = "STOPPED"
        for container in t.containers:
            container.last_status = "STOPPED"
        lt.phase = t.last_status = "STOPPED"
        lt.kill_deadline = None

    # -- container mode ---------------------------------------------------------------
    def _in_container(self, cdef: dict[str, Any]) -> bool:
        """Container mode, and the image names a registry host."""
        first, _, rest = str(cdef.get("image") or "").partition("/")
        return bool(
            self.docker_host
            and rest
            and ("." in first or ":" in first or first == "localhost")
        )

    def _docker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = self.docker_host or ""
        return env

    def _docker(
        self, *args: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["docker", *args],
                env=self._docker_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(args, 1, "", str(exc))

    @staticmethod
    def _container_name(lt: LocalTask) -> str:
        return f"starburst-task-{lt.id}"

    def _pulled(self, lt: LocalTask) -> bool:
        """Start pulling the image in the background; True once it is here.

        A failed pull stops the task as Fargate does (TaskFailedToStart)."""
        if lt.pull is None:

            def pull() -> None:
                if not lt.image:
                    lt.pull_error = "the container definition has no image"
                    return
                if self._docker("image", "inspect", lt.image).returncode == 0:
                    return
                done = self._docker("pull", "--quiet", lt.image, timeout=600)
                if done.returncode != 0:
                    lt.pull_error = (done.stderr or done.stdout).strip()[-500:]

            lt.pull = threading.Thread(
                target=pull, daemon=True, name=f"starburst-pull-{lt.id}"
            )
            lt.pull.start()
            return False
        if lt.pull.is_alive():
            return False
        if lt.pull_error is not None:
            self._fail_start(
                lt,
                "CannotPullContainerError: pull image manifest has "
                f"failed: {lt.image}: {lt.pull_error}",
            )
            return False
        return True

    def _docker_run(self, lt: LocalTask, cwd: Path) -> list[str]:
        """``docker run`` of the task's image with its environment and limits."""
        env_file = cwd / "env"
        env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in lt.env.items() if "\n" not in v)
        )
        argv = [
            "docker",
            "run",
            "--name",
            self._container_name(lt),
            "--network",
            "host",
            "--env-file",
            str(env_file),
            "--label",
            f"dev.starburst.local.task={lt.arn}",
        ]
        if lt.memory_mib:
            argv += [
                "--memory",
                f"{lt.memory_mib}m",
                "--memory-swap",
                f"{lt.memory_mib}m",
            ]
        if lt.cpu_units:
            argv += ["--cpus", f"{lt.cpu_units / 1024:g}"]
        entry, *args = lt.command or [""]
        if entry:
            argv += ["--entrypoint", entry]
        return [*argv, lt.image, *args]

    def _container_exit(self, lt: LocalTask, code: int) -> int:
        """The container's own exit code (and OOM kill), then remove it."""
        name = self._container_name(lt)
        done = self._docker(
            "inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name
        )
        if done.returncode == 0:
            exit_text, oom = done.stdout.split()
            code = int(exit_text)
            if oom == "true" and lt.exit_override is None:
                lt.exit_override, lt.container_reason = 137, OOM_REASON
        elif code == 125 and lt.exit_override is None:  # the engine could not start it
            lt.container_reason = "CannotStartContainerError: see the task's log"
        self._docker("rm", "--force", name)
        return code
