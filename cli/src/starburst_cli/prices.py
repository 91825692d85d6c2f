"""``starburst-cli prices``: the Fargate price table the SDK bills with.

``refresh`` rebuilds it from the AWS Pricing API and saves it where the SDK
reads it first (``$STARBURST_PRICES``, else ``~/.starburst/fargate_prices.json``);
``show`` says which table is in use and what it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from starburst_sdk import _cost

from . import _output as out

app = typer.Typer(
    help="The Fargate price table: show it, refresh it from AWS.", no_args_is_help=True
)

#: The regions the Pricing API answers in.
PRICING_REGION = "us-east-1"


def _pricing_client() -> Any:
    import boto3

    return boto3.client("pricing", region_name=PRICING_REGION)


@app.command()
@out.errors()
def refresh(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="where to write it [default: $STARBURST_PRICES or "
            "~/.starburst/fargate_prices.json, which the SDK reads first]",
        ),
    ] = None,
) -> None:
    """Rebuild the price table from the AWS Pricing API and save it for the SDK."""
    try:
        table = _cost.refresh_prices(_pricing_client())
    except ValueError as exc:
        raise out.fail(f"{exc}; the bundled table stays in use") from None
    path = _cost.write_prices(table, output)
    typer.echo(
        f"wrote {len(table['regions'])} region(s) of Fargate prices "
        f"({table['as_of']}) to {path}"
    )


@app.command()
@out.errors()
def show(
    region: Annotated[str | None, typer.Option(help="only this region")] = None,
    as_json: out.AsJson = False,
) -> None:
    """Show the price table in use: its source, date and per-region prices."""
    user = _cost.prices_path()
    table = _cost.load_prices()
    regions = table["regions"]
    if region is not None:
        if region not in regions:
            raise out.not_found(
                f"no Fargate price for {region!r}; known: " + ", ".join(sorted(regions))
            )
        regions = {region: regions[region]}
    path = str(user) if user.is_file() else "bundled with starburst-sdk"
    if as_json:
        out.print_json({"path": path, **table, "regions": regions})
        return
    typer.echo(f"{path}: {table['source']}, as of {table['as_of']}")
    rows = []
    for name, entry in sorted(regions.items()):
        for market in ("on_demand", "spot"):
            for arch in _cost.ARCHES:
                p = entry[market][arch]
                rows.append(
                    (
                        name,
                        market.replace("_", "-"),
                        arch,
                        f"{p['vcpu_hour']:.5f}",
                        f"{p['gb_hour']:.6f}",
                    )
                )
    out.table(("region", "market", "arch", "$/vCPU-hour", "$/GB-hour"), rows)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="prices")
