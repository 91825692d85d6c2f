"""The ``starburst-cli`` command.

Each command group lives in its own module and is added here; a command's
docstring is its ``--help``.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="starburst-cli",
    help="Run Python function calls on AWS Fargate: local cloud, infrastructure, status.",
    no_args_is_help=True,
    add_completion=False,
)


def _register() -> None:
    from . import checks, cleanup, fleet, image, infra, local, prices

    app.add_typer(local.app, name="local")
    app.add_typer(infra.app, name="infra")
    fleet.register(app)
    checks.register(app)
    cleanup.register(app)
    prices.register(app)
    image.register(app)


_register()
