"""``starburst-cli image``: the worker images of a deployment.

``build`` finds the image of this environment in the deployment's ECR repository
by its content-hash tag, or builds and pushes it; ``list`` shows the images there
and the inputs each was built from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._output import AsJson, Deployment, errors, print_json

app = typer.Typer(
    help="Worker images: build (only when missing) and list.", no_args_is_help=True
)


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="image")


@app.command()
def build(
    deployment: Deployment = "default",
    project: Annotated[
        Path | None,
        typer.Option(
            help="where to look for uv.lock, poetry.lock, requirements*.txt or "
            "pyproject.toml [default: the working dir]"
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            envvar="STARBURST_BASE_IMAGE",
            help="base image [default: python:<this Python>-slim]",
        ),
    ] = None,
    arch: Annotated[
        str | None, typer.Option(help="x86_64 or arm64 [default: this machine's]")
    ] = None,
    builder: Annotated[
        str | None,
        typer.Option(
            envvar="STARBURST_IMAGE_BUILDER",
            help="docker, oci (no engine needed) or auto",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="build and push even if the registry has the tag")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Find this environment's worker image in ECR, or build and push it."""
    from starburst_sdk._image import ensure_image

    with errors():
        result = ensure_image(
            deployment=deployment,
            project_dir=project,
            base_image=base_image,
            arch=arch,
            builder=builder,
            force=force,
        )
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json(
            {
                "image": result.ref,
                "tag": result.tag,
                "digest": result.digest,
                "built": result.built,
                "builder": result.builder,
                "inputs": result.inputs.document(),
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
