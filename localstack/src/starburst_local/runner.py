"""The local Fargate runner: moto (ECS, ECR, EC2, ...) plus a task driver, one process.

``python -m starburst_local.runner --port 4599 --state-dir DIR`` serves, on
127.0.0.1 only, one WSGI app:

- ``/_starburst/...``: the runner's own API: ``health``, ``tasks``,
  ``metadata/<task id>[/task]`` (each task's ``ECS_CONTAINER_METADATA_URI_V4``),
  ``faults`` (GET / POST / DELETE, see :mod:`starburst_local.faults`), ``quotas``
  (GET / PUT ``{"on_demand": 16, "spot": 16}``), ``containers`` (GET / PUT
  ``{"docker_host": "unix://..."}``: container mode on or, with ``""``, off);
- Service Quotas requests for ServiceCode ``fargate`` (see :mod:`.quotas`);
- everything else: moto's server app, with ``MOTO_ACCOUNT_ID=000000000000``.

:class:`Runner` does the same in process (tests use it without LocalStack). On
SIGTERM / SIGINT the runner stops every task process, then exits.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from . import quotas as quota_api
from .driver import Driver
from .faults import Fault

log = logging.getLogger("starburst.local")

ACCOUNT_ID = "000000000000"


@dataclass
class RunnerConfig:
    """Settings of one runner; ``port`` 0 picks a free port."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 4599
    quota_on_demand: float = 16.0
    quota_spot: float = 16.0
    cold_start: float = 0.0
    stop_grace: float = 10.0
    region: str = "us-east-1"
    ship_logs: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Container mode: run each task with ``docker run`` on this engine.
    docker_host: str = ""


def _json_response(
    start_response: Any, status: int, body: Any, content_type: str = "application/json"
) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
    }
    start_response(
        f"{status} {reason.get(status, 'Error')}",
        [("Content-Type", content_type), ("Content-Length", str(len(data)))],
    )
    return [data]


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


class RunnerApp:
    """WSGI middleware: the runner API and Fargate quotas in front of moto."""

    def __init__(
        self, moto_app: Any, driver: Driver, quotas: quota_api.Quotas, region: str
    ) -> None:
        self.moto_app = moto_app
        self.driver = driver
        self.quotas = quotas
        self.region = region

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_starburst/"):
            return self._api(environ, start_response, path[len("/_starburst/") :])
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(quota_api.TARGET_PREFIX):
            body = _read_body(environ)
            answer = quota_api.handle(
                self.quotas,
                target,
                body,
                environ.get("HTTP_AUTHORIZATION", ""),
                region=self.region,
                account=ACCOUNT_ID,
            )
            if answer is not None:
                return _json_response(
                    start_response, answer[0], answer[1], "application/x-amz-json-1.1"
                )
            environ["wsgi.input"] = io.BytesIO(body)
        return self.moto_app(environ, start_response)

    def _api(self, environ: dict[str, Any], start_response: Any, route: str) -> Any:
        method = environ.get("REQUEST_METHOD", "GET")
        parts = [unquote(p) for p in route.strip("/").split("/")]
        try:
            status, body = self._route(method, parts, environ)
        except (ValueError, TypeError) as exc:
            status, body = 400, {"error": str(exc)}
        return _json_response(start_response, status, body)

    def _route(
        self, method: str, parts: list[str], environ: dict[str, Any]
    ) -> tuple[int, Any]:
        head = parts[0]
        if head == "health":
            return 200, {
                "ok": True,
                "tasks": len(self.driver.arns()),
                "started": self.driver.started_count,
            }
        if head == "tasks":
            return 200, [
                {
                    "arn": lt.arn,
                    "phase": lt.phase,
                    "pid": lt.proc.pid if lt.proc else None,
                }
                for lt in self.driver.snapshot()
            ]
        if head == "metadata" and len(parts) >= 2:
            lt = self.driver.get(parts[1])
            if lt is None:
                return 404, {"error": f"no task {parts[1]}"}
            if parts[2:] == ["task"]:
                return 200, lt.metadata("")
            return 200, lt.container_metadata()
        if head == "faults":
            return self._faults(method, environ)
        if head == "containers":
            if method == "PUT":
                doc = json.loads(_read_body(environ) or b"{}")
                self.driver.docker_host = str(doc.get("docker_host") or "") or None
            return 200, {"docker_host": self.driver.docker_host}
        if head == "quotas":
            if method == "PUT":
                doc = json.loads(_read_body(environ) or b"{}")
                self.quotas.on_demand = float(
                    doc.get("on_demand", self.quotas.on_demand)
                )
                self.quotas.spot = float(doc.get("spot", self.quotas.spot))
            return 200, {"on_demand": self.quotas.on_demand, "spot": self.quotas.spot}
        return 404, {"error": f"unknown route /_starburst/{'/'.join(parts)}"}

    def _faults(self, method: str, environ: dict[str, Any]) -> tuple[int, Any]:
        if method == "POST":
            doc = json.loads(_read_body(environ) or b"{}")
            docs = doc if isinstance(doc, list) else [doc]
            for item in docs:
                self.driver.faults.add(Fault.from_json(item))
        elif method == "DELETE":
            self.driver.faults.clear()
        elif method != "GET":
            return 405, {"error": "use GET, POST or DELETE"}
        return 200, self.driver.faults.pending()


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(
            f"the runner binds loopback only; {host} is not a loopback address"
        )


class Runner:
    """moto + the task driver, served on ``config.host:config.port`` in threads."""

    def __init__(self, config: RunnerConfig) -> None:
        _check_loopback(config.host)
        # moto reads its account from the environment on every request; the
        # old value comes back in stop(), for a runner hosted in a test.
        self._account_before = os.environ.get("MOTO_ACCOUNT_ID")
        os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT_ID
        self.config = config
        self.quotas = quota_api.Quotas(config.quota_on_demand, config.quota_spot)
        self.driver = Driver(
            Path(config.state_dir),
            cold_start=config.cold_start,
            stop_grace=config.stop_grace,
            extra_env=config.extra_env,
            ship_logs=config.ship_logs,
            docker_host=config.docker_host or None,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self.config.port

    def start(self) -> Runner:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_app = DomainDispatcherApplication(create_backend_app)
        app = RunnerApp(moto_app, self.driver, self.quotas, self.config.region)
        self._server = make_server(
            self.config.host,
            self.config.port,
            app,
            threaded=True,
            request_handler=MotoRequestHandler,
        )
        self.driver.runner_url = self.url
        self.driver.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="starburst-runner-http", daemon=True
        )
        self._thread.start()
        log.info(
            "local Fargate runner on %s (state in %s)", self.url, self.config.state_dir
        )
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop every task, then the HTTP server."""
        self.driver.stop(grace=grace)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._account_before is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = self._account_before

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_args(argv: list[str] | None = None) -> RunnerConfig:
    p = argparse.ArgumentParser(
        prog="python -m starburst_local.runner",
        description="The starburst local Fargate runner.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("STARBURST_LOCAL_RUNNER_PORT", 4599)),
    )
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument(
        "--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    )
    p.add_argument(
        "--quota-on-demand",
        type=float,
        default=_env_float("STARBURST_LOCAL_QUOTA_ON_DEMAND", 16.0),
        help="Fargate On-Demand vCPU quota (L-3032A538)",
    )
    p.add_argument(
        "--quota-spot",
        type=float,
        default=_env_float("STARBURST_LOCAL_QUOTA_SPOT", 16.0),
        help="Fargate Spot vCPU quota (L-36FBB829)",
    )
    p.add_argument(
        "--cold-start",
        type=float,
        default=_env_float("STARBURST_LOCAL_COLD_START", 0.0),
        help="seconds between PROVISIONING and RUNNING",
    )
    p.add_argument(
        "--stop-grace",
        type=float,
        default=_env_float("STARBURST_LOCAL_STOP_GRACE", 10.0),
        help="seconds between SIGTERM and SIGKILL on StopTask",
    )
    p.add_argument(
        "--no-ship-logs",
        action="store_true",
        help="do not send task output to CloudWatch Logs",
    )
    p.add_argument(
        "--docker-host",
        default=os.environ.get("STARBURST_LOCAL_DOCKER_HOST", ""),
        help="container mode: run tasks as containers on this Docker "
        "engine (unix://...) instead of local processes",
    )
    a = p.parse_args(argv)
    return RunnerConfig(
        state_dir=a.state_dir,
        host=a.host,
        port=a.port,
        quota_on_demand=a.quota_on_demand,
        quota_spot=a.quota_spot,
        cold_start=a.cold_start,
        stop_grace=a.stop_grace,
        region=a.region,
        ship_logs=not a.no_ship_logs,
        docker_host=a.docker_host,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("STARBURST_LOCAL_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    config = parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    runner = Runner(config).start()
    print(f"starburst local runner listening on {runner.url}", flush=True)
    done.wait()
    log.info("stopping the local runner")
    runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
