"""``starburst-cli local``: start, stop and use the local cloud (LocalStack + runner).

``up`` starts both (with ``--containers``, a private Docker engine and registry too)
and provisions a deployment, ``down`` stops them by pid, ``status``
says what runs where, ``env`` prints the variables: ``eval "$(starburst-cli local env)"``.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="The local cloud: LocalStack plus the local Fargate runner.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="state dir",
        show_default="$STARBURST_LOCAL_DIR or ~/.starburst/local",
    ),
]


def _where(state_dir: Path | None) -> str:
    """`` --state-dir X`` when one was given, for the commands a message names."""
    return f" --state-dir {shlex.quote(str(state_dir))}" if state_dir else ""


def _local() -> Any:
    try:
        import starburst_local
    except ImportError:
        typer.echo(
            "starburst-local is not installed; install `starburst-cli[local]`", err=True
        )
        raise typer.Exit(1) from None
    return starburst_local


def _fail(message: str, state_dir: Path | None = None) -> typer.Exit:
    """Print ``message`` to stderr, each ```starburst-cli local ...``` command in
    it naming ``state_dir``; return the ``Exit`` for the caller to raise."""
    if state_dir is not None:
        message = re.sub(
            r"`starburst-cli local (\w+)((?:(?!--state-dir)[^`])*)`",
            lambda m: f"`starburst-cli local {m[1]}{_where(state_dir)}{m[2]}`",
            message,
        )
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@app.command()
def install() -> None:
    """Install LocalStack (pinned, hash-checked) into a cached Python 3.13 venv."""
    local = _local()
    from starburst_local.install import ensure_localstack

    try:
        path = ensure_localstack()
    except Exception as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"LocalStack is installed in {path}")
    del local


@app.command()
def up(
    state_dir: StateDir = None,
    localstack_port: Annotated[
        int, typer.Option(help="LocalStack port (0: any free)")
    ] = 4566,
    runner_port: Annotated[int, typer.Option(help="runner port (0: any free)")] = 4599,
    deployment: Annotated[
        str, typer.Option(help="deployment to provision")
    ] = "default",
    region: Annotated[str, typer.Option(help="AWS region to emulate")] = "us-east-1",
    quota: Annotated[float, typer.Option(help="Fargate On-Demand vCPU quota")] = 16.0,
    spot_quota: Annotated[float, typer.Option(help="Fargate Spot vCPU quota")] = 16.0,
    cold_start: Annotated[float, typer.Option(help="seconds before a task runs")] = 0.0,
    stop_grace: Annotated[
        float, typer.Option(help="SIGTERM-to-SIGKILL seconds")
    ] = 10.0,
    containers: Annotated[
        bool,
        typer.Option(
            "--containers",
            help="run each task in a container of its worker image, built from "
            "this environment by Plan (needs scripts/install-container-tools.sh)",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start LocalStack and the local Fargate runner, then provision the deployment."""
    local = _local()
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(message)s",
    )
    started = time.monotonic()
    try:
        state = local.up(
            state_dir,
            ls_port=localstack_port,
            runner_port=runner_port,
            deployment=deployment,
            region=region,
            quota_on_demand=quota,
            quota_spot=spot_quota,
            cold_start=cold_start,
            stop_grace=stop_grace,
            containers=containers,
        )
    except Exception as exc:
        raise _fail(f"the local cloud did not start: {exc}", state_dir) from None
    typer.echo(
        f"local cloud up in {time.monotonic() - started:.1f} s: LocalStack on "
        f"{state.localstack_url}, runner on {state.runner_url}, deployment "
        f"{state.deployment!r}."
    )
    if state.containers:
        typer.echo(
            f"Container mode: Docker engine {state.containers['docker_host']}, "
            f"registry {state.containers['registry_address']} (the deployment's ECR "
            "repository); Plan builds the worker image of the environment it runs in."
        )
    typer.echo(f'Use it with: eval "$(starburst-cli local env{_where(state_dir)})"')


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop LocalStack and the runner (by recorded pid) and remove the runner's files."""
    local = _local()
    try:
        ran = local.down(state_dir)
    except Exception as exc:
        raise _fail(f"stopping the local cloud failed: {exc}", state_dir) from None
    typer.echo("local cloud stopped." if ran else "the local cloud was not running.")


@app.command()
def status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Say what runs where; exit code 1 when the local cloud is not running."""
    local = _local()
    try:
        report = local.status(state_dir)
    except Exception as exc:
        raise _fail(str(exc), state_dir) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif "localstack" not in report:
        typer.echo(
            f"the local cloud is not running (state dir {report['state_dir']}); "
            f"start it with `starburst-cli local up{_where(state_dir)}`."
        )
    else:
        for name in ("localstack", "runner"):
            part = report[name]
            state = (
                "up"
                if part["alive"] and part["healthy"]
                else ("not answering" if part["alive"] else "stopped")
            )
            typer.echo(
                f"{name:10} {state:14} pid {part['pid']}  "
                f"http://127.0.0.1:{part['port']}  log {part['log']}"
            )
        if "containers" in report:
            c = report["containers"]
            up_ = c["engine_alive"] and c["registry_alive"]
            typer.echo(
                f"{'containers':10} {'up' if up_ else 'stopped':14} engine "
                f"{c['docker_host']}  registry {c['registry']}"
            )
        typer.echo(
            f"deployment {report['deployment']!r}, state dir {report['state_dir']}"
        )
    if not report["running"]:
        raise typer.Exit(1)


@app.command()
def env(state_dir: StateDir = None) -> None:
    """Print `export` lines that point AWS clients at the running local cloud."""
    local = _local()
    try:
        state = local.read_state(state_dir)
    except Exception as exc:
        raise _fail(str(exc), state_dir) from None
    if state is None:
        raise _fail(
            "the local cloud is not running; start it with "
            f"`starburst-cli local up{_where(state_dir)}`"
        )
    typer.echo(local.export_lines(state.env))
