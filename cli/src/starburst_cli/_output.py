"""What every fleet command shares: exit codes, errors, JSON, tables, times.

Exit codes: 0 ok, 1 an error (a message on stderr that names the fix),
3 nothing found (an unknown session, no sessions, no log streams).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

OK = 0
ERROR = 1
NOT_FOUND = 3

Deployment = Annotated[
    str,
    typer.Option(
        "--deployment",
        envvar="STARBURST_DEPLOYMENT",
        help="which deployment (its SSM config document /starburst/<name>/config)",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def fail(message: str, code: int = ERROR) -> typer.Exit:
    """Print ``message`` to stderr; return the ``Exit`` for the caller to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def not_found(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(NOT_FOUND)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Turn the failures a fleet command can meet into exit code 1 and a fix."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    from starburst_sdk import StarburstError

    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except StarburstError as exc:  # ConfigError and friends carry their own fix
        raise fail(str(exc)) from None
    except ValueError as exc:  # e.g. a region the price table does not know
        raise fail(str(exc)) from None
    except NoCredentialsError:
        raise fail(
            "no AWS credentials: run `aws configure`, set AWS_PROFILE, or "
            'for the local cloud `eval "$(starburst-cli local env)"`'
        ) from None
    except NoRegionError:
        raise fail("no AWS region: set AWS_REGION (or `aws configure`)") from None
    except EndpointConnectionError as exc:
        raise fail(
            f"cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}: check the "
            "network, or start the local cloud with `starburst-cli local up`"
        ) from None
    except ClientError as exc:
        op = exc.operation_name
        raise fail(
            f"AWS refused {op}: {exc}. Check that these credentials may call "
            "it in this account and region"
        ) from None
    except BotoCoreError as exc:
        raise fail(f"AWS call failed: {exc}") from None


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def console() -> Console:
    # A wide virtual terminal when not on a tty, so piped tables do not wrap.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    t = Table(
        *columns,
        title=title,
        title_justify="left",
        box=None,
        header_style="bold",
        pad_edge=False,
    )
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console().print(t)


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch -> ISO 8601 in UTC (JSON output)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def clock(ts: float | None) -> str:
    """Seconds since the epoch -> local time for tables."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def dollars(value: float) -> str:
    return f"${value:.4f}" if value < 100 else f"${value:,.2f}"


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"`` or ``"0"`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(
            f"{text!r} is not a duration; use a number with s, m, h, d or w, e.g. 7d"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]
