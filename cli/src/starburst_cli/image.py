"""``starburst-cli image``: the worker images of a deployment.

``build`` finds the image of this environment in the deployment's ECR repository
by its content-hash tag, or builds and pushes it; ``list`` shows the images there
and the inputs each was built from. ``build`` reads the project from ``--project``
or the working directory (``Plan`` starts from the running script's directory);
its defaults (x86_64, the ``auto`` builder) are ``Plan``'s, so it prebuilds the
image ``Plan`` uses.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ._output import AsJson, Deployment, errors, print_json

app = typer.Typer(
    help="Worker images: build (only when missing) and list.", no_args_is_help=True
)


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="image")


BUILDERS = ("auto", "docker", "oci")


def _builder(value: str | None) -> str | None:
    if value is not None and value.lower() not in BUILDERS:
        raise typer.BadParameter(
            f"{value!r} is not a builder; use docker (a Docker engine), oci (no "
            "engine) or auto (the engine when one answers)"
        )
    return value.lower() if value else None


def _arch(value: str) -> str:
    from starburst_sdk._image import normalize_arch

    try:
        return normalize_arch(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an architecture; use x86_64 (alias amd64) or arm64 "
            "(alias aarch64), as in Plan(arch=...)"
        ) from None


class _Progress(logging.Handler):
    """The SDK's ``starburst`` log lines on stderr while a build runs: INFO as
    progress, WARNING and above prefixed ``warning:``."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"warning: {text}"
        typer.echo(text, err=True)


@contextlib.contextmanager
def _progress() -> Iterator[None]:
    logger = logging.getLogger("starburst")
    handler = _Progress(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed here once, not again by a root handler
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@app.command()
def build(
    deployment: Deployment = "default",
    project: Annotated[
        Path | None,
        typer.Option(
            help="the project directory: it, or its nearest parent up to a VCS "
            "root, holding uv.lock, poetry.lock, requirements*.txt or "
            "pyproject.toml gives the image's packages (with none: this "
            "interpreter's installed distributions)",
            show_default="the working dir",
            exists=True,
            file_okay=False,
            resolve_path=True,
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            envvar="STARBURST_BASE_IMAGE",
            help="base image",
            show_default="python:<this Python>-slim",
        ),
    ] = None,
    arch: Annotated[
        str,
        typer.Option(
            help="x86_64 or arm64, as Plan(arch=...), whose default is x86_64 too",
            callback=_arch,
        ),
    ] = "x86_64",
    builder: Annotated[
        str | None,
        typer.Option(
            envvar="STARBURST_IMAGE_BUILDER",
            help="docker, oci (no engine needed) or auto",
            show_default="auto",
            callback=_builder,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="build and push even if the registry has the tag")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Find this environment's worker image in ECR, or build and push it.

    Progress and warnings (such as packages left out of the image) go to stderr.
    """
    from starburst_sdk._image import ensure_image

    with errors(), _progress():
        result = ensure_image(
            deployment=deployment,
            project_dir=project or Path.cwd(),
            base_image=base_image,
            arch=arch,
            builder=builder,
            force=force,
        )
    if as_json:
        print_json(
            {
                "image": result.ref,
                "tag": result.tag,
                "digest": result.digest,
                "built": result.built,
                "builder": result.builder,
                "inputs": result.inputs.document(),
                "warnings": list(result.warnings),
                "seconds": result.seconds,
            }
        )
        return
    how = f"built with {result.builder}" if result.built else "already in the registry"
    typer.echo(f"{result.ref}\n  tag {result.tag} ({how})")


@app.command("list")
def list_(deployment: Deployment = "default", as_json: AsJson = False) -> None:
    """List the worker images in ECR and the inputs each was built from."""
    from starburst_sdk._image import list_images

    with errors():
        images = list_images(deployment=deployment)
    if as_json:
        print_json(
            [
                {
                    "tag": i.tag,
                    "digest": i.digest,
                    "builder": i.builder,
                    "created": i.created,
                    "size": i.size,
                    "inputs": i.inputs,
                }
                for i in images
            ]
        )
        return
    if not images:
        typer.echo("no worker images in this deployment's repository")
        return
    for i in images:
        env = i.inputs.get("environment", {})
        source = ", ".join(env.get("files", {})) or (
            f"{len(env.get('distributions', []))} installed distributions"
        )
        worker = i.inputs.get("worker", {})
        typer.echo(
            f"{i.tag}  built {i.created} with {i.builder}  "
            f"{i.size / 1e6:.0f} MB  {i.digest}"
        )
        typer.echo(f"  environment  {env.get('kind')}: {source}")
        typer.echo(
            f"  python {i.inputs.get('python')}  arch {i.inputs.get('arch')}  "
            f"worker {worker.get('version')}  base {i.inputs.get('base')}"
        )
