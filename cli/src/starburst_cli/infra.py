"""``starburst-cli infra``: plan, apply and destroy the AWS resources starburst needs.

The commands drive the ``terraform`` binary (or ``tofu``) on the root module in
``terraform/`` through tofupy, printing Terraform's progress as it happens. Each
deployment lives in its own Terraform workspace, named after it, so its state sits
in ``terraform/terraform.tfstate.d/<deployment>/`` (``terraform.tfstate`` for
``default``). The region comes from ``--region`` or the usual AWS variables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Create, inspect and remove the AWS resources starburst needs (Terraform).",
    no_args_is_help=True,
)

BINARIES = ("terraform", "tofu")
INSTALL_HINT = (
    "starburst needs Terraform >= 1.6 or OpenTofu on PATH and found neither. Install "
    "one: https://developer.hashicorp.com/terraform/install or "
    "https://opentofu.org/docs/intro/install/"
)

Deployment = Annotated[
    str,
    typer.Option(
        "--deployment",
        "-d",
        help="Deployment name; the SDK finds it as STARBURST_DEPLOYMENT.",
        envvar="STARBURST_DEPLOYMENT",
    ),
]
Region = Annotated[
    str | None,
    typer.Option(
        help="AWS region to deploy into.", envvar=["AWS_REGION", "AWS_DEFAULT_REGION"]
    ),
]
Directory = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Terraform root module (default: ./terraform, else the one beside this package).",
        envvar="STARBURST_TERRAFORM_DIR",
        file_okay=False,
    ),
]
Variables = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        help="Root-module variable as NAME=VALUE (repeatable), e.g. --var enable_nat_gateway=true.",
    ),
]
Yes = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask before changing anything.")
]


def find_binary() -> str:
    """Path of ``terraform``, else ``tofu``; exits with an install hint if neither."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    typer.echo(INSTALL_HINT, err=True)
    raise typer.Exit(code=1)


def module_dir(explicit: Path | None) -> Path:
    candidates = (
        [explicit]
        if explicit
        else [
            Path.cwd() / "terraform",
            Path(__file__).resolve().parents[3] / "terraform",
        ]
    )
    for candidate in candidates:
        if (candidate / "main.tf").is_file():
            return candidate.resolve()
    raise typer.BadParameter(
        f"no Terraform root module (main.tf) in {', '.join(map(str, candidates))}",
        param_hint="--dir",
    )


def _workspace(binary: str, cwd: Path, env: dict[str, str], name: str) -> None:
    """Select (creating if needed) the deployment's workspace."""
    result = subprocess.run(
        [binary, "workspace", "select", "-or-create", name],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        typer.echo(result.stdout + result.stderr, err=True)
        raise typer.Exit(code=1)


def _make_tofu(binary: str, cwd: Path, env: dict[str, str]) -> Any:
    from tofupy import Tofu

    class StreamingTofu(Tofu):  # type: ignore[misc]
        """tofupy, but yielding Terraform's JSON events as they arrive.

        tofupy 1.1's own ``_run_stream`` waits for the process to exit before
        yielding, and ignores its exit code; this one streams and records it.
        """

        returncode: int = 0

        def _run_stream(self, args: list[str]) -> Generator[dict[str, Any]]:
            cmd = [self.binary_path, *map(str, args)]
            full_env = {**os.environ, "TF_IN_AUTOMATION": "1", **self.env}
            with subprocess.Popen(
                cmd, cwd=self.cwd, env=full_env, stdout=subprocess.PIPE, text=True
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        yield json.loads(line)
                    except ValueError:
                        yield {"type": "raw", "@level": "info", "@message": line}
            self.returncode = proc.returncode

    return StreamingTofu(cwd=cwd, binary=binary, env=env)


#: Event types whose messages are noise on a terminal.
QUIET_EVENTS = {"version", "refresh_start", "refresh_complete"}


def _echo_event(event: dict[str, Any]) -> None:
    kind, message = event.get("type"), event.get("@message", "")
    if kind in QUIET_EVENTS or not message:
        return
    if kind == "diagnostic":
        detail = event.get("diagnostic", {}).get("detail", "")
        error = event.get("@level") == "error"
        typer.echo(f"{message}\n{detail}".rstrip(), err=error)
        return
    typer.echo(message)


def _prepare(
    deployment: str, region: str | None, directory: Path | None
) -> tuple[Any, dict[str, str]]:
    binary = find_binary()
    cwd = module_dir(directory)
    if not region:
        raise typer.BadParameter(
            "no region: pass --region or set AWS_REGION", param_hint="--region"
        )
    env = {"AWS_REGION": region, "TF_INPUT": "0"}
    tofu = _make_tofu(binary, cwd, env)
    typer.echo(
        f"{Path(binary).name} {tofu.version} in {cwd}, deployment {deployment!r}"
    )
    done = subprocess.run(
        [binary, "init", "-json", "-input=false"],
        cwd=cwd,
        env={**os.environ, "TF_IN_AUTOMATION": "1", **env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        typer.echo(init_failure(done.stdout, done.stderr), err=True)
        raise typer.Exit(code=1)
    _workspace(tofu.binary_path, cwd, env, deployment)
    return tofu, env


#: How ``init`` says it could not reach the provider registry (or a mirror).
_UNREACHABLE = re.compile(
    r"could not connect to \S+|dial tcp|no such host|i/o timeout|"
    r"TLS handshake timeout|connection refused"
)


def init_failure(stdout: str, stderr: str) -> str:
    """The message for a failed ``init -json``: the error diagnostics' summary
    and detail lines only, and the fix when the provider could not be fetched."""
    lines: list[str] = []
    for raw in stdout.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        diag = event.get("diagnostic") if isinstance(event, dict) else None
        if not diag or diag.get("severity", event.get("@level")) != "error":
            continue
        lines.append(diag.get("summary") or event.get("@message", ""))
        lines += [
            f"  {line}"
            for line in str(diag.get("detail", "")).splitlines()
            if line.strip()
        ]
    if not lines:  # no JSON diagnostics: Terraform's own words, less its warnings
        lines = [line for line in stderr.strip().splitlines() if line.strip()][-20:]
    text = "\n".join(lines) or "(no output)"
    message = f"error: terraform init failed:\n{text}"
    if "provider" in text and _UNREACHABLE.search(text):
        message += (
            "\nTerraform could not download the AWS provider (hashicorp/aws). "
            "Check the network (and HTTPS_PROXY), or, with no network, install "
            "the provider from a mirror: point TF_CLI_CONFIG_FILE at a CLI config "
            "whose provider_installation block names a filesystem_mirror or "
            "network_mirror, then run the command again"
        )
    return message


def _var_args(deployment: str, variables: list[str] | None) -> list[str]:
    args = ["-var", f"deployment={deployment}"]
    for item in variables or []:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--var")
        args += ["-var", item]
    return args


def _plan(tofu: Any, args: list[str], plan_file: Path | None) -> Any:
    log, _ = tofu.plan(
        plan_file=plan_file, event_handlers={"all": _echo_event}, extra_args=args
    )
    if tofu.returncode != 0 or log.errors:
        typer.echo("terraform plan failed", err=True)
        raise typer.Exit(code=1)
    return log


def _changes(log: Any) -> int:
    return (
        getattr(log, "added", 0)
        + getattr(log, "changed", 0)
        + getattr(log, "removed", 0)
    )


def _apply_plan(tofu: Any, plan_file: Path) -> Any:
    log = tofu.apply(plan_file=plan_file, event_handlers={"all": _echo_event})
    if tofu.returncode != 0 or log.errors:
        typer.echo(
            "terraform apply failed; fix the error above and run it again", err=True
        )
        raise typer.Exit(code=1)
    return log


@app.command()
def plan(
    deployment: Deployment = "default",
    region: Region = None,
    directory: Directory = None,
    var: Variables = None,
) -> None:
    """Show what `infra apply` would create, change or destroy."""
    tofu, _ = _prepare(deployment, region, directory)
    _plan(tofu, _var_args(deployment, var), None)


@app.command()
def apply(
    deployment: Deployment = "default",
    region: Region = None,
    directory: Directory = None,
    var: Variables = None,
    yes: Yes = False,
) -> None:
    """Create or update the deployment's AWS resources and its SSM config document."""
    tofu, _ = _prepare(deployment, region, directory)
    with tempfile.TemporaryDirectory() as tmp:
        plan_file = Path(tmp) / "starburst.tfplan"
        log = _plan(tofu, _var_args(deployment, var), plan_file)
        if _changes(log) and not yes:
            typer.confirm("Apply these changes?", abort=True)
        if _changes(log):
            _apply_plan(tofu, plan_file)
    outputs = tofu.output()
    name = outputs["ssm_parameter_name"].value
    where = outputs["region"].value
    typer.echo(f"Config written to SSM parameter {name} in {where}.")
    typer.echo(
        f"Use it with: export STARBURST_DEPLOYMENT={deployment} AWS_REGION={where}"
    )


@app.command()
def destroy(
    deployment: Deployment = "default",
    region: Region = None,
    directory: Directory = None,
    var: Variables = None,
    yes: Yes = False,
) -> None:
    """Delete every resource of the deployment, including its bucket and config."""
    tofu, _ = _prepare(deployment, region, directory)
    with tempfile.TemporaryDirectory() as tmp:
        plan_file = Path(tmp) / "starburst-destroy.tfplan"
        log = _plan(tofu, [*_var_args(deployment, var), "-destroy"], plan_file)
        if not _changes(log):
            typer.echo("Nothing to destroy.")
            return
        if not yes:
            typer.confirm(f"Destroy deployment {deployment!r}?", abort=True)
        _apply_plan(tofu, plan_file)
    typer.echo(f"Deployment {deployment!r} destroyed.")
