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

#: The region whose Pricing API endpoint is asked (it also answers in ap-south-1).
PRICING_REGION = "us-east-1"
#: The Pricing API lives in real AWS only; the local cloud does not serve it.
_WHERE = (
    "the AWS Pricing API is served by real AWS only (endpoints in us-east-1 and "
    "ap-south-1), not by the local cloud"
)


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
            help="where to write it (the SDK reads it first)",
            show_default="$STARBURST_PRICES or ~/.starburst/fargate_prices.json",
        ),
    ] = None,
) -> None:
    """Rebuild the price table from the AWS Pricing API and save it for the SDK.

    Needs real AWS credentials allowed pricing:GetProducts and network access to
    the Pricing API (us-east-1); the local cloud does not serve it.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    kept = "the bundled table stays in use"
    try:
        table = _cost.refresh_prices(_pricing_client())
    except ValueError as exc:
        raise out.fail(f"{exc}; {kept}") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        url = exc.kwargs.get("endpoint_url", "the AWS Pricing API")
        raise out.fail(
            f"cannot reach {url}: check the network (and HTTPS_PROXY); {_WHERE}. "
            f"Until it works, {kept}"
        ) from None
    except NoCredentialsError:
        raise out.fail(
            "no AWS credentials for the Pricing API: configure real ones (aws "
            f"configure, AWS_PROFILE) allowed pricing:GetProducts; {_WHERE}. Until "
            f"then, {kept}"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise out.fail(
            f"the AWS Pricing API refused GetProducts ({code}): it needs real AWS "
            f"credentials allowed pricing:GetProducts; {_WHERE}. Until then, {kept}"
        ) from None
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
