"""The local cloud as a whole: up, down, status, env, and :class:`LocalCloud` for tests.

``up``: pick ports (0 = a free one) -> start LocalStack (installed on demand) -> start
the runner (``python -m starburst_local.runner``) with the cloud's AWS environment ->
write ``<state dir>/state.json`` (pids, create times, ports) -> provision the
deployment by applying the project's Terraform (:mod:`starburst_local.provision`). ``down``: stop the
runner, then LocalStack, by recorded pid (never by name), and remove the runner's
files and the state file. ``env``: the variables that point any boto3 program here.

With ``containers=True`` (``starburst-cli local up --containers``) ``up`` first starts
a private Docker engine and Debian's registry (:mod:`starburst_local.containers`) in a
temp dir of their own and pushes the stand-in base image there; the runner runs each
task as ``docker run`` of its image, and the deployment's ECR repository is that
registry with no fixed worker image, so ``Plan`` builds (or finds) the image of the
caller's environment. ``down`` stops both by pid as well.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import procs
from ._paths import state_dir as resolve_state_dir
from .localstack import start_localstack, stop_localstack

log = logging.getLogger("starburst.local")

DEFAULT_LS_PORT = 4566
DEFAULT_RUNNER_PORT = 4599
STATE_FILE = "state.json"
#: The deployment's worker image on the local cloud. In process mode the runner
#: ignores the image and runs ``python -m starburst_worker`` from this machine's
#: environment, which already holds the user's packages.
LOCAL_WORKER_IMAGE = "starburst-worker:local-process"
LOCALSTACK_SERVICES = ("S3", "SQS", "IAM", "CLOUDWATCH_LOGS", "SSM", "STS")
RUNNER_SERVICES = ("ECS", "ECR", "EC2", "SERVICE_QUOTAS")


class LocalCloudError(RuntimeError):
    """The local cloud could not be started, found or stopped."""


@dataclass
class CloudState:
    """What ``state.json`` records about a running local cloud."""

    state_dir: str
    localstack: dict[str, Any]
    runner: dict[str, Any]
    deployment: str = "default"
    region: str = "us-east-1"
    started_at: float = field(default_factory=time.time)
    config: dict[str, Any] = field(default_factory=dict)
    #: Container mode: ``root``, ``engine`` and ``registry`` (process records),
    #: ``docker_host``, ``registry_address``, ``base_image``; empty otherwise.
    containers: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = cloud_env(
            self.localstack["port"], self.runner["port"], self.region, self.deployment
        )
        if self.containers:
            # Image builds use the private engine and the stand-in base image.
            env["DOCKER_HOST"] = self.containers["docker_host"]
            env["STARBURST_BASE_IMAGE"] = self.containers["base_image"]
        return env

    @property
    def runner_url(self) -> str:
        return f"http://127.0.0.1:{self.runner['port']}"

    @property
    def localstack_url(self) -> str:
        return f"http://127.0.0.1:{self.localstack['port']}"


def cloud_env(
    ls_port: int,
    runner_port: int,
    region: str = "us-east-1",
    deployment: str = "default",
) -> dict[str, str]:
    """The environment that sends every AWS client to the local cloud."""
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "STARBURST_DEPLOYMENT": deployment,
    }
    env |= {
        f"AWS_ENDPOINT_URL_{s}": f"http://127.0.0.1:{ls_port}"
        for s in LOCALSTACK_SERVICES
    }
    env |= {
        f"AWS_ENDPOINT_URL_{s}": f"http://127.0.0.1:{runner_port}"
        for s in RUNNER_SERVICES
    }
    return env


def export_lines(env: dict[str, str]) -> str:
    """``export K='V'`` lines for ``eval``."""
    return "\n".join(f"export {k}='{v}'" for k, v in sorted(env.items()))


# -- the state file ---------------------------------------------------------------------
def read_state(state_dir: str | os.PathLike[str] | None = None) -> CloudState | None:
    path = resolve_state_dir(state_dir) / STATE_FILE
    try:
        return CloudState(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise LocalCloudError(
            f"{path} is unreadable ({exc}); remove it and run "
            "`starburst-cli local up` again"
        ) from None


def _write_state(state: CloudState) -> None:
    path = Path(state.state_dir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)


def is_running(state: CloudState | None) -> bool:
    if not state or not (procs.alive(state.localstack) and procs.alive(state.runner)):
        return False
    c = state.containers
    return not c or (procs.alive(c["engine"]) and procs.alive(c["registry"]))


# -- container mode ---------------------------------------------------------------------
def start_containers() -> dict[str, Any]:
    """Start a private Docker engine and registry and push the stand-in base image."""
    from .containers import (
        BASE_PYTHON,
        DockerEngine,
        LocalRegistry,
        missing_tools,
        push_base_image,
    )

    missing = missing_tools()
    if missing:
        raise LocalCloudError(
            f"container mode needs {', '.join(missing)}, not installed: install "
            "them from Debian's packages with `sudo scripts/install-container-tools.sh`, "
            "or start the local cloud without --containers"
        )
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != BASE_PYTHON:
        raise LocalCloudError(
            f"container mode's base image has Debian 12's Python {BASE_PYTHON}, and "
            f"this is Python {python}: a worker refuses functions pickled by another "
            f"minor version. Run starburst-cli from a Python {BASE_PYTHON} "
            "environment, or start the local cloud without --containers"
        )
    # A short path: dockerd's unix socket lives here (at most 107 bytes).
    root = Path(tempfile.mkdtemp(prefix="sb-ctr-"))
    engine = DockerEngine(root / "engine")
    registry = LocalRegistry(root / "registry")
    try:
        engine.start()
        registry.start()
        base = push_base_image(engine, registry)
    except Exception:
        stop_containers(
            {"root": str(root), "engine": engine.proc, "registry": registry.proc}
        )
        raise
    return {
        "root": str(root),
        "engine": engine.proc,
        "registry": registry.proc,
        "docker_host": engine.host,
        "registry_address": registry.address,
        "base_image": base,
    }


def stop_containers(record: dict[str, Any]) -> bool:
    """Stop the registry and the engine of ``record`` by pid; remove their dir."""
    from .containers import DockerEngine, LocalRegistry

    if not record:
        return False
    root = Path(record["root"])
    registry = LocalRegistry(root / "registry")
    registry.proc = record.get("registry")
    engine = DockerEngine(root / "engine")
    engine.proc = record.get("engine")
    ran = procs.alive(engine.proc) or procs.alive(registry.proc)
    registry.stop()
    engine.stop()  # its containers stop with it; its mounts are undone
    shutil.rmtree(root, ignore_errors=True)
    return ran


# -- the runner process -----------------------------------------------------------------
def start_runner(
    port: int,
    state_dir: Path,
    env: dict[str, str],
    *,
    quota_on_demand: float,
    quota_spot: float,
    cold_start: float,
    stop_grace: float,
    timeout: float = 60.0,
    docker_host: str = "",
) -> dict[str, Any]:
    if procs.port_in_use(port):
        raise LocalCloudError(
            f"port {port} on 127.0.0.1 is taken; stop what uses it or "
            "pick another with --runner-port"
        )
    log_path = state_dir / "runner.log"
    cmd = [
        sys.executable,
        "-m",
        "starburst_local.runner",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir / "runner"),
        "--quota-on-demand",
        str(quota_on_demand),
        "--quota-spot",
        str(quota_spot),
        "--cold-start",
        str(cold_start),
        "--stop-grace",
        str(stop_grace),
    ]
    if docker_host:
        cmd += ["--docker-host", docker_host]
    rec = procs.spawn(cmd, {**os.environ, **env}, log_path)
    try:
        procs.wait_http(
            f"http://127.0.0.1:{port}/_starburst/health",
            rec,
            "the local Fargate runner",
            log_path,
            timeout=timeout,
        )
    except Exception:
        procs.stop(rec, "the local Fargate runner", grace=5)
        raise
    return {**rec, "port": port, "log": str(log_path)}


def stop_runner(rec: dict[str, Any] | None, stop_grace: float = 10.0) -> bool:
    return procs.stop(rec, "the local Fargate runner", grace=stop_grace + 10)


# -- up / down / status ---------------------------------------------------------------
def up(
    state_dir: str | os.PathLike[str] | None = None,
    *,
    ls_port: int = DEFAULT_LS_PORT,
    runner_port: int = DEFAULT_RUNNER_PORT,
    deployment: str = "default",
    region: str = "us-east-1",
    quota_on_demand: float = 16.0,
    quota_spot: float = 16.0,
    cold_start: float = 0.0,
    stop_grace: float = 10.0,
    provision: bool = True,
    containers: bool = False,
) -> CloudState:
    """Start LocalStack and the runner (port 0 = a free one) and provision ``deployment``.

    If this state dir's cloud already runs, it is only re-provisioned. With
    ``containers`` the runner runs tasks in containers of their image (see the
    module's docstring); the deployment's ``worker_image`` is then left empty
    so that ``Plan`` builds (or finds) the image of the caller's environment.
    """
    sdir = resolve_state_dir(state_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    state = read_state(sdir)
    started_here = not (state and is_running(state))
    if not started_here:
        if containers and not state.containers:
            raise LocalCloudError(
                f"the local cloud in {sdir} already runs without containers; stop it "
                "with `starburst-cli local down`, then start it with --containers"
            )
        log.info("the local cloud in %s already runs; re-provisioning", sdir)
    else:
        if state:
            down(sdir)
        ctr = start_containers() if containers else {}
        try:
            state = _start(
                sdir,
                ls_port or procs.free_port(),
                runner_port or procs.free_port(),
                deployment,
                region,
                dict(
                    quota_on_demand=quota_on_demand,
                    quota_spot=quota_spot,
                    cold_start=cold_start,
                    stop_grace=stop_grace,
                ),
                containers=ctr,
            )
        except BaseException:
            stop_containers(ctr)
            raise
    if provision:
        from .provision import provision as apply_terraform

        try:
            state.config = apply_terraform(
                state.env,
                deployment,
                sdir / "terraform",
                variables={"worker_image": LOCAL_WORKER_IMAGE},
            )
            if state.containers:
                state.config = use_registry(
                    state.env,
                    state.config,
                    state.containers["registry_address"],
                    deployment,
                )
        except BaseException:
            if started_here:  # a cloud with no deployment is of no use: stop it
                down(sdir)
            raise
        _write_state(state)
    return state


def use_registry(
    env: dict[str, str], config: dict[str, Any], registry: str, deployment: str
) -> dict[str, Any]:
    """Write ``deployment``'s config document as ``config`` with its ECR repository in
    ``registry`` (the local stand-in for ECR's registry) and no fixed worker image.

    moto's ECR serves the API (GetAuthorizationToken answers a fake token) but no
    registry; the repository URL is where images are pushed and pulled.
    """
    import boto3

    from starburst_sdk._config import parameter_name

    repo = config["ecr_repository_url"].rsplit("/", 1)[-1]
    doc = {
        **config,
        "deployment": deployment,
        "worker_image": "",
        "ecr_repository_url": f"{registry}/{repo}",
    }
    ssm = boto3.client(
        "ssm",
        endpoint_url=env["AWS_ENDPOINT_URL_SSM"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    ssm.put_parameter(
        Name=parameter_name(deployment),
        Value=json.dumps(doc),
        Type="String",
        Overwrite=True,
    )
    return doc


def _start(
    sdir: Path,
    ls_port: int,
    runner_port: int,
    deployment: str,
    region: str,
    runner_opts: dict[str, float],
    containers: dict[str, Any],
) -> CloudState:
    if ls_port == runner_port:
        raise LocalCloudError(f"LocalStack and the runner cannot share port {ls_port}")
    ls = start_localstack(ls_port, sdir)
    state = CloudState(
        state_dir=str(sdir),
        localstack=ls,
        runner={},
        deployment=deployment,
        region=region,
        containers=containers,
    )
    _write_state(state)
    try:
        state.runner = start_runner(
            runner_port,
            sdir,
            cloud_env(ls_port, runner_port, region, deployment),
            docker_host=containers.get("docker_host", ""),
            **runner_opts,
        )
        state.runner["stop_grace"] = runner_opts["stop_grace"]
    except Exception:
        stop_localstack(ls)
        (sdir / STATE_FILE).unlink(missing_ok=True)
        raise
    _write_state(state)
    return state


def down(state_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the runner and LocalStack by pid; remove runner files and the state file.

    Returns False when nothing was running.
    """
    sdir = resolve_state_dir(state_dir)
    state = read_state(sdir)
    if state is None:
        return False
    ran = stop_runner(state.runner, state.runner.get("stop_grace", 10.0))
    ran = stop_localstack(state.localstack) or ran
    ran = stop_containers(state.containers) or ran
    shutil.rmtree(sdir / "runner", ignore_errors=True)
    # LocalStack and moto keep nothing across a restart, so neither may the
    # Terraform state that describes what they held.
    shutil.rmtree(sdir / "terraform", ignore_errors=True)
    shutil.rmtree(sdir / "localstack", ignore_errors=True)
    (sdir / STATE_FILE).unlink(missing_ok=True)
    return ran


def status(state_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What runs where: per part, pid, port, alive, healthy; ``running`` overall."""
    sdir = resolve_state_dir(state_dir)
    state = read_state(sdir)
    report: dict[str, Any] = {"state_dir": str(sdir), "running": False}
    if state is None:
        return report
    report["deployment"] = state.deployment
    for name, rec, url in (
        ("localstack", state.localstack, f"{state.localstack_url}/_localstack/health"),
        ("runner", state.runner, f"{state.runner_url}/_starburst/health"),
    ):
        report[name] = {
            "pid": rec.get("pid"),
            "port": rec.get("port"),
            "alive": procs.alive(rec),
            "healthy": _answers(url),
            "log": rec.get("log"),
        }
    report["running"] = all(
        report[n]["alive"] and report[n]["healthy"] for n in ("localstack", "runner")
    )
    if state.containers:
        c = state.containers
        report["containers"] = {
            "docker_host": c["docker_host"],
            "registry": c["registry_address"],
            "base_image": c["base_image"],
            "engine_alive": procs.alive(c["engine"]),
            "registry_alive": procs.alive(c["registry"]),
        }
        report["running"] = report["running"] and is_running(state)
    return report


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


# -- the runner's fault / quota API, for tests ----------------------------------------------
def runner_call(runner_url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{runner_url}/_starburst/{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class LocalCloud:
    """A local cloud for the lifetime of a ``with`` block (or ``start()`` / ``stop()``).

    >>> with LocalCloud(tmp_dir, ls_port=0, runner_port=0) as cloud:
    ...     boto3_env = cloud.env
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        ls_port: int = DEFAULT_LS_PORT,
        runner_port: int = DEFAULT_RUNNER_PORT,
        deployment: str = "default",
        region: str = "us-east-1",
        quota: float = 16.0,
        spot_quota: float | None = None,
        cold_start: float = 0.0,
        stop_grace: float = 10.0,
        provision: bool = True,
        containers: bool = False,
    ) -> None:
        self.state_dir = resolve_state_dir(state_dir)
        self._opts = dict(
            ls_port=ls_port,
            runner_port=runner_port,
            deployment=deployment,
            region=region,
            quota_on_demand=quota,
            quota_spot=quota if spot_quota is None else spot_quota,
            cold_start=cold_start,
            stop_grace=stop_grace,
            provision=provision,
            containers=containers,
        )
        self.state: CloudState | None = None

    def start(self) -> LocalCloud:
        self.state = up(self.state_dir, **self._opts)
        return self

    def stop(self) -> None:
        down(self.state_dir)
        self.state = None

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _state(self) -> CloudState:
        if self.state is None:
            raise LocalCloudError("the local cloud is not started")
        return self.state

    @property
    def env(self) -> dict[str, str]:
        return self._state().env

    @property
    def config(self) -> dict[str, Any]:
        return self._state().config

    @property
    def runner_url(self) -> str:
        return self._state().runner_url

    @property
    def localstack_url(self) -> str:
        return self._state().localstack_url

    def inject_fault(self, **fault: Any) -> list[dict[str, Any]]:
        """POST one fault (see :mod:`starburst_local.faults`); returns pending faults."""
        return runner_call(self.runner_url, "POST", "faults", fault)

    def fail_next_starts(self, count: int = 1, reason: str = "") -> None:
        self.inject_fault(kind="start_failure", count=count, reason=reason)

    def kill_task(
        self,
        task: str | None = None,
        after: float = 0.0,
        exit_code: int = 137,
        reason: str = "",
    ) -> None:
        self.inject_fault(
            kind="kill", task=task, after=after, exit_code=exit_code, reason=reason
        )

    def spot_interrupt(self, task: str | None = None, after: float = 0.0) -> None:
        self.inject_fault(kind="spot_interruption", task=task, after=after)

    def clear_faults(self) -> None:
        runner_call(self.runner_url, "DELETE", "faults")

    def use_containers(
        self, docker_host: str, registry: str, deployment: str = "containers"
    ) -> dict[str, Any]:
        """Turn the running runner's container mode on (tasks whose image is in a
        registry run as ``docker run`` on ``docker_host``) and write a
        ``deployment`` whose ECR repository is ``registry``; returns its config.

        The cloud's own deployment and its process-mode tasks are unchanged.
        """
        runner_call(self.runner_url, "PUT", "containers", {"docker_host": docker_host})
        state = self._state()
        return use_registry(state.env, state.config, registry, deployment)

    def set_quotas(
        self, on_demand: float | None = None, spot: float | None = None
    ) -> None:
        body = {
            k: v for k, v in (("on_demand", on_demand), ("spot", spot)) if v is not None
        }
        runner_call(self.runner_url, "PUT", "quotas", body)
