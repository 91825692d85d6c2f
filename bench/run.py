"""`make bench`: no-op throughput on the local cloud next to ProcessPoolExecutor.

Starts its own local cloud (LocalStack + the local Fargate runner) in a temp
directory on free loopback ports, runs each case, prints a markdown table and
writes it to bench/results/latest.md. Every starburst figure is printed beside
its ProcessPoolExecutor baseline from the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def noop(x: int) -> int:
    return x


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    n, w = args.tasks, args.workers

    from starburst_local.cloud import LocalCloud

    rows: list[tuple[str, float, float, str]] = []

    def row(name: str, seconds: float, count: int, note: str = "") -> None:
        rows.append((name, seconds, count / seconds, note))
        print(f"  {name}: {seconds:.2f} s, {count / seconds:,.0f} tasks/s {note}",
              flush=True)

    print(f"ProcessPoolExecutor({w}), {n} no-op tasks", flush=True)
    with ProcessPoolExecutor(w) as pool:
        pool.submit(noop, 0).result()  # start the processes outside the timing
        row(f"ProcessPoolExecutor({w}) map, warm", timed(
            lambda: list(pool.map(noop, range(n)))), n)
        row(f"ProcessPoolExecutor({w}) submit, warm", timed(
            lambda: wait([pool.submit(noop, i) for i in range(n)])), n)

    with tempfile.TemporaryDirectory(prefix="starburst-bench-") as tmp:
        t0 = time.perf_counter()
        with LocalCloud(tmp, ls_port=0, runner_port=0, quota=64) as cloud:
            print(f"local cloud up in {time.perf_counter() - t0:.1f} s", flush=True)
            os.environ.update(cloud.env)
            from starburst_sdk import Plan

            with Plan(workers=w, cpu=0.25, memory="512MB", idle_timeout=60) as plan:
                cold = timed(lambda: list(plan.map(noop, range(n))))
                row(f"starburst map, {w} workers, cold (includes worker start)", cold, n)
                warm = timed(lambda: list(plan.map(noop, range(n))))
                row(f"starburst map, {w} workers, warm", warm, n)
                k = min(n, 500)
                sub = timed(lambda: wait([plan.submit(noop, i) for i in range(k)]))
                row(f"starburst submit, one task object each, warm ({k} tasks)", sub, k)
                t_submit = timed(lambda: [plan.submit(noop, i) for i in range(k)])
                print(f"  client submit() rate: {k / t_submit:,.0f} calls/s", flush=True)

    machine = f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()})"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"No-op tasks, {n} per case, {w} workers or processes; {stamp}, {machine}.",
        "",
        "| case | wall s | tasks/s | per-task overhead ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds, rate, _ in rows:
        lines.append(f"| {name} | {seconds:.2f} | {rate:,.0f} | {1000 / rate:.3f} |")
    table = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(table + "\n")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
