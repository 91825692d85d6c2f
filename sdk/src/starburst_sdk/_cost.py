"""What Fargate bills: before a run (``estimate``) and after it (``session_cost``).

Fargate bills a task per second, rounded up, with a one-minute minimum, from the
start of its image pull until it stops, at a price per vCPU-hour and per
GB-hour that depends on the region, the CPU architecture and whether the task
runs On-Demand or on Spot. Ephemeral storage above the free 20 GB is billed
per GB-hour as well.

The price table is data, ``data/fargate_prices.json``, with its source and
date. ``refresh_prices`` rebuilds the same structure from the AWS Pricing API;
``write_prices`` saves it where ``load_prices`` looks first
(``$STARBURST_PRICES``, else ``~/.starburst/fargate_prices.json``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import _ecs
from ._session import Registry, WorkerRecord

log = logging.getLogger("starburst")

MINIMUM_SECONDS = 60
ARCHES = ("x86_64", "arm64")
SPOT_PROVIDER = "FARGATE_SPOT"
FREE_STORAGE_GB = 20
PRICES_ENV = "STARBURST_PRICES"
DEFAULT_COLD_START = 40.0
TASK_OVERHEAD = 0.1  # seconds per task object: S3 GET and PUT, SQS receive and delete


# ---------------------------------------------------------------------------
# The price table


def prices_path() -> Path:
    """Where a refreshed price table is read from and written to."""
    env = os.environ.get(PRICES_ENV)
    if env:
        return Path(env)
    return Path.home() / ".starburst" / "fargate_prices.json"


_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def load_prices(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The price table: ``path``, else a refreshed table at ``prices_path()``
    when one exists, else the table shipped with the SDK.

    Raises:
        ValueError: the table is malformed.
    """
    if path is None:
        user = prices_path()
        path = user if user.is_file() else None
    if path is None:
        key, mtime = "<bundled>", 0.0
    else:
        key, mtime = str(path), os.stat(path).st_mtime
    hit = _cache.get(key)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    if path is None:
        text = (
            resources.files("starburst_sdk")
            .joinpath("data/fargate_prices.json")
            .read_text()
        )
    else:
        text = Path(path).read_text()
    doc = json.loads(text)
    check_prices(doc, key)
    _cache[key] = (mtime, doc)
    return doc


def check_prices(doc: Any, source: str = "price table") -> None:
    """Raise ``ValueError`` unless ``doc`` has the price table's structure."""
    if not isinstance(doc, dict) or not isinstance(doc.get("regions"), dict):
        raise ValueError(f"{source}: not a Fargate price table (no 'regions' object)")
    for key in ("source", "as_of"):
        if not isinstance(doc.get(key), str):
            raise ValueError(f"{source}: {key!r} must be a string")
    for region, entry in doc["regions"].items():
        for market in ("on_demand", "spot"):
            for arch in ARCHES:
                try:
                    prices = entry[market][arch]
                    ok = all(
                        isinstance(prices[k], int | float) and prices[k] >= 0
                        for k in ("vcpu_hour", "gb_hour")
                    )
                except (KeyError, TypeError):
                    ok = False
                if not ok:
                    raise ValueError(
                        f"{source}: region {region!r} lacks {market} {arch} "
                        "vcpu_hour and gb_hour"
                    )
        if not isinstance(entry.get("storage_gb_hour"), int | float):
            raise ValueError(f"{source}: region {region!r} lacks storage_gb_hour")


def write_prices(
    doc: dict[str, Any], path: str | os.PathLike[str] | None = None
) -> Path:
    """Save a price table (e.g. from ``refresh_prices``) where ``load_prices``
    finds it. -> the path written."""
    check_prices(doc)
    target = Path(path) if path is not None else prices_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(target)
    return target


@dataclass(frozen=True)
class Rate:
    """USD per vCPU-hour and per GB-hour (memory), and per GB-hour of
    ephemeral storage above the free 20 GB."""

    vcpu_hour: float
    gb_hour: float
    storage_gb_hour: float = 0.0

    def per_second(
        self, vcpu: float, memory_gb: float, storage_gb: float = FREE_STORAGE_GB
    ) -> float:
        extra = max(0.0, storage_gb - FREE_STORAGE_GB)
        return (
            vcpu * self.vcpu_hour
            + memory_gb * self.gb_hour
            + extra * self.storage_gb_hour
        ) / 3600


def rate(
    region: str,
    *,
    arch: str = "x86_64",
    spot: bool = False,
    prices: dict[str, Any] | None = None,
) -> Rate:
    """The Fargate price of one region, architecture and market.

    Raises:
        ValueError: the region is not in the price table (the message lists
            the ones that are), or ``arch`` is not ``x86_64`` or ``arm64``.
    """
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {', '.join(ARCHES)}, got {arch!r}")
    table = prices if prices is not None else load_prices()
    try:
        entry = table["regions"][region]
    except KeyError:
        known = ", ".join(sorted(table["regions"]))
        raise ValueError(
            f"no Fargate price for region {region!r}; the price table "
            f"({table.get('as_of', '?')}) knows: {known}. Run `starburst-cli prices "
            "refresh` (it reads the AWS Pricing API) to add regions"
        ) from None
    p = entry["spot" if spot else "on_demand"][arch]
    return Rate(
        float(p["vcpu_hour"]),
        float(p["gb_hour"]),
        float(entry.get("storage_gb_hour", 0.0)),
    )


def billed_seconds(seconds: float) -> float:
    """Fargate bills per second, rounded up, with a one-minute minimum."""
    return float(max(MINIMUM_SECONDS, math.ceil(seconds - 1e-9)))


def task_cost(
    seconds: float,
    vcpu: float,
    memory_gb: float,
    region: str,
    *,
    arch: str = "x86_64",
    spot: bool = False,
) -> float:
    """Dollars for one Fargate task that ran ``seconds``."""
    r = rate(region, arch=arch, spot=spot)
    return billed_seconds(seconds) * r.per_second(vcpu, memory_gb)


# ---------------------------------------------------------------------------
# The AWS Pricing API


def refresh_prices(pricing_client: Any) -> dict[str, Any]:
    """Build a price table from the AWS Pricing API (``get_products``,
    ServiceCode ``AmazonECS``, the Fargate Linux usage types).

    ``pricing_client`` is a boto3 ``pricing`` client (the API answers in
    us-east-1 and a few other regions). Regions that lack any of the eight
    vCPU/GB prices are left out. Spot prices in the Pricing API are the
    current ones; they float.

    Raises:
        ValueError: the API returned no complete region.
    """
    found: dict[str, dict[str, Any]] = {}
    args: dict[str, Any] = {
        "ServiceCode": "AmazonECS",
        "Filters": [
            {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "Compute"}
        ],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    while True:
        resp = pricing_client.get_products(**args)
        for item in resp.get("PriceList", []):
            product = json.loads(item) if isinstance(item, str) else item
            parsed = _parse_product(product)
            if parsed is None:
                continue
            region, market, arch, dimension, usd = parsed
            entry = found.setdefault(region, {})
            if dimension == "storage_gb_hour":
                entry["storage_gb_hour"] = usd
            else:
                entry.setdefault(market, {}).setdefault(arch, {})[dimension] = usd
        token = resp.get("NextToken")
        if not token:
            break
        args["NextToken"] = token
    regions: dict[str, Any] = {}
    for region, entry in sorted(found.items()):
        complete = all(
            dim in entry.get(market, {}).get(arch, {})
            for market in ("on_demand", "spot")
            for arch in ARCHES
            for dim in ("vcpu_hour", "gb_hour")
        )
        if not complete:
            log.debug("price table: region %s is incomplete in the Pricing API", region)
            continue
        entry.setdefault("storage_gb_hour", 0.0)
        entry["approximate"] = ["spot"]
        regions[region] = entry
    if not regions:
        raise ValueError("the AWS Pricing API returned no complete Fargate prices")
    return {
        "source": "AWS Pricing API, get_products ServiceCode=AmazonECS",
        "as_of": time.strftime("%Y-%m-%d", time.gmtime()),
        "note": (
            "Fargate Linux prices from the AWS Pricing API. Spot prices float "
            "with spare capacity; these were the current ones on as_of. The "
            "first 20 GB of ephemeral storage are free."
        ),
        "free_storage_gb": FREE_STORAGE_GB,
        "regions": regions,
    }


def _parse_product(product: dict[str, Any]) -> tuple[str, str, str, str, float] | None:
    """-> (region, market, arch, dimension, USD) of one Fargate price, or None."""
    attrs = product.get("product", {}).get("attributes", {})
    usage = attrs.get("usagetype", "")
    region = attrs.get("regionCode", "")
    if not region or "Windows" in usage:
        return None
    if "EphemeralStorage" in usage and usage.endswith("GB-Hours"):
        dimension, market, arch = "storage_gb_hour", "on_demand", "x86_64"
    elif "Fargate" in usage or "SpotUsage" in usage:
        if usage.endswith("vCPU-Hours:perCPU"):
            dimension = "vcpu_hour"
        elif usage.endswith("GB-Hours"):
            dimension = "gb_hour"
        else:
            return None
        market = "spot" if "SpotUsage" in usage else "on_demand"
        arch = "arm64" if "ARM" in usage else "x86_64"
    else:
        return None
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = dim.get("pricePerUnit", {}).get("USD")
            if usd is not None:
                return region, market, arch, dimension, float(usd)
    return None


# ---------------------------------------------------------------------------
# What a session cost


@dataclass(frozen=True)
class WorkerCost:
    """One worker's bill: ``seconds`` it ran, ``billed_seconds`` after the
    one-minute minimum and rounding, and its price."""

    arn: str
    seconds: float
    billed_seconds: float
    capacity_provider: str
    dollars: float


@dataclass(frozen=True)
class CostReport:
    """A session's Fargate bill. ``estimated`` is true when some times were
    unknown and had to be guessed; ``note`` says which, and on what prices."""

    total: float
    workers: list[WorkerCost]
    estimated: bool
    note: str

    def __str__(self) -> str:
        label = "about " if self.estimated else ""
        return (
            f"{label}${self.total:.4f} for {len(self.workers)} worker(s) ({self.note})"
        )


def session_cost(registry: Registry, *, now: float | None = None) -> CostReport:
    """What Fargate bills for a session's workers, from its registry.

    Each worker is billed per second from its image pull (or, when unknown,
    its ``startedAt``) to its ``stoppedAt``, a running worker up to ``now``,
    with the one-minute minimum, at the Spot price when it ran on
    FARGATE_SPOT. A worker that never started costs nothing. A worker whose
    start is unknown is counted from its launch, and the report is then
    ``estimated``.

    Raises:
        ValueError: the session's region is not in the price table.
    """
    s = registry.settings
    now = time.time() if now is None else now
    region = s["region"]
    arch = s.get("arch", "x86_64")
    vcpu = float(s["cpu"])
    memory_gb = float(s["memory_mib"]) / 1024
    storage_gb = float(s.get("ephemeral_storage_gb", FREE_STORAGE_GB))
    default_provider = s.get("capacity_provider", "FARGATE")
    rates = {spot: rate(region, arch=arch, spot=spot) for spot in (False, True)}
    costs: list[WorkerCost] = []
    guessed_start = guessed_stop = running = 0
    for w in sorted(registry.all(), key=lambda w: (w.launched, w.arn)):
        provider = w.capacity_provider or default_provider
        start = billing_start(w)
        end = w.stopped
        if start is None:
            if not w.alive:  # stopped before it started: nothing to bill
                costs.append(WorkerCost(w.arn, 0.0, 0.0, provider, 0.0))
                continue
            start = w.launched
            guessed_start += 1
        if end is None:
            end = now
            if w.alive:
                running += 1
            else:
                guessed_stop += 1
        seconds = max(0.0, end - start)
        billed = billed_seconds(seconds)
        per_second = rates[provider == SPOT_PROVIDER].per_second(
            vcpu, memory_gb, storage_gb
        )
        costs.append(WorkerCost(w.arn, seconds, billed, provider, billed * per_second))
    total = sum(c.dollars for c in costs)
    market = "Spot" if default_provider == SPOT_PROVIDER else "On-Demand"
    parts = [
        f"{region} {market} {arch} prices of {load_prices().get('as_of', '?')}, "
        "per second with a one-minute minimum"
    ]
    if running:
        parts.append(f"{running} running worker(s) counted up to now")
    if guessed_start:
        parts.append(
            f"estimate: {guessed_start} worker(s) with no start time from "
            "ECS counted from their launch"
        )
    if guessed_stop:
        parts.append(
            f"estimate: {guessed_stop} stopped worker(s) with no stop time "
            "counted up to now"
        )
    if any(c.capacity_provider == SPOT_PROVIDER for c in costs):
        parts.append("Spot prices float; the table's are approximate")
    return CostReport(
        total, costs, bool(guessed_start or guessed_stop), "; ".join(parts)
    )


def billing_start(worker: WorkerRecord) -> float | None:
    """When Fargate starts billing a worker: its image pull, else its start."""
    return worker.pull_started or worker.started


def refresh_registry(registry: Registry, ecs: Any, cluster: str) -> bool:
    """Update the registry's workers from DescribeTasks (a hundred per call).

    Only workers that may still change are asked about: alive ones and ones
    without a stop time. -> False if the ECS API failed (the records are
    then left as they were).
    """
    stale = [w for w in registry.all() if w.alive or w.stopped is None]
    if not stale:
        return True
    try:
        descs = _ecs.describe_tasks(ecs, cluster, [w.arn for w in stale])
    except Exception as exc:
        log.debug("DescribeTasks failed; cost from the registry as it is: %s", exc)
        return False
    by_arn = {d["taskArn"]: d for d in descs}
    for worker in stale:
        desc = by_arn.get(worker.arn)
        if desc is not None:
            worker.update(desc)
    return True


# ---------------------------------------------------------------------------
# What a run will cost


@dataclass(frozen=True)
class Estimate:
    """What a run should take and cost, before it starts. ``str()`` gives a
    readable summary with its assumptions."""

    n_tasks: int
    seconds_per_task: float
    workers: int
    waves: int
    chunks: int
    wall_seconds: float
    dollars: float
    assumptions: str = field(repr=False)

    def __str__(self) -> str:
        return (
            f"{self.n_tasks:,} task(s) of {self.seconds_per_task:.3g} s on "
            f"{self.workers} worker(s) in {self.waves} wave(s): about "
            f"{_duration(self.wall_seconds)} and ${self.dollars:.4f}\n"
            f"assumptions: {self.assumptions}"
        )


def estimate(
    n_tasks: int,
    seconds_per_task: float,
    *,
    workers: int,
    vcpu: float,
    memory_gb: float,
    region: str,
    arch: str = "x86_64",
    spot: bool = False,
    chunksize: int = 1,
    cold_start: float = DEFAULT_COLD_START,
    max_tasks_per_worker: int = 0,
    vcpu_quota: float | None = None,
    idle_tail: float = 0.0,
    task_overhead: float = TASK_OVERHEAD,
    timed: str = "",
) -> Estimate:
    """The arithmetic behind ``Plan.estimate``.

    ``n_tasks`` items travel in task objects of ``chunksize`` items; each
    task object costs ``task_overhead`` seconds on top of its items. The pool
    holds ``min(workers, task objects, what the vCPU quota fits)`` workers;
    every worker pays ``cold_start`` before its first task (billed, since AWS
    bills from the image pull, which is most of it) and stays billed until the
    last task object finishes, plus ``idle_tail`` (a detached session's idle
    timeout). A worker limited to ``max_tasks_per_worker`` task objects is
    replaced by a new one, which is another wave and another cold start.
    """
    if n_tasks < 0:
        raise ValueError(f"n_tasks must be >= 0, got {n_tasks}")
    if seconds_per_task < 0:
        raise ValueError(f"seconds_per_task must be >= 0, got {seconds_per_task}")
    if cold_start < 0:
        raise ValueError(f"cold_start must be >= 0, got {cold_start}")
    r = rate(region, arch=arch, spot=spot)
    per_second = r.per_second(vcpu, memory_gb)
    chunks = math.ceil(n_tasks / chunksize) if n_tasks else 0
    fit = workers
    if vcpu_quota is not None:
        fit = min(fit, max(1, math.floor(vcpu_quota / vcpu + 1e-9)))
    pool = min(fit, chunks)
    market = "Spot" if spot else "On-Demand"
    notes = [
        f"{timed or f'{seconds_per_task:g} s per task'}",
        f"{chunksize} item(s) per task object, {task_overhead:g} s overhead each",
        f"cold start {cold_start:g} s per worker, billed",
        "per-second billing with a one-minute minimum per worker",
        f"{region} {market} {arch} at ${r.vcpu_hour:g}/vCPU-h and "
        f"${r.gb_hour:g}/GB-h for {vcpu:g} vCPU and {memory_gb:g} GB",
    ]
    if vcpu_quota is not None:
        notes.append(f"vCPU quota {vcpu_quota:g} (fits {fit} worker(s))")
    if idle_tail:
        notes.append(f"detached: workers idle {idle_tail:g} s before they exit")
    if spot:
        notes.append("Spot prices float, and interrupted tasks run again")
    if pool == 0:
        return Estimate(n_tasks, seconds_per_task, 0, 0, 0, 0.0, 0.0, "; ".join(notes))
    chunk_seconds = (n_tasks / chunks) * seconds_per_task + task_overhead
    rounds = math.ceil(chunks / pool)  # task objects per worker slot
    per_life = max_tasks_per_worker or rounds
    waves = math.ceil(rounds / per_life)
    wall = waves * cold_start + rounds * chunk_seconds
    dollars = 0.0
    left = rounds
    for _ in range(waves):  # each wave: ``pool`` workers, each billed for its life
        life = min(per_life, left)
        left -= life
        billed = billed_seconds(
            cold_start + life * chunk_seconds + (idle_tail if left == 0 else 0.0)
        )
        dollars += pool * billed * per_second
    if max_tasks_per_worker:
        notes.append(f"a worker exits after {max_tasks_per_worker} task object(s)")
    return Estimate(
        n_tasks, seconds_per_task, pool, waves, chunks, wall, dollars, "; ".join(notes)
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
