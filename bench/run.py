"""`make bench`: starburst on the local cloud, next to the tools a user would
otherwise pick, all in one run on this machine.

1. A naive ``map`` of 10,000 no-op tasks, the same work hand-batched into 100
   tasks, and ``max_tasks_per_worker=1`` (one worker per task; measured on a
   few tasks and modelled for 10,000, since 10,000 local workers cannot run
   here): wall time and modelled Fargate cost, each from a cold start (the
   local runner delays every worker's start by ``--cold-start`` seconds, as
   Fargate's start-up does).
2. Client ``submit`` rate and resident memory per pending future for 100,000
   submits, in a separate process, beside a bare ``Future`` and
   ``ProcessPoolExecutor.submit`` measured the same way.
3. Throughput of no-op, 10 ms (sleeping) and 1 MB-argument tasks on starburst
   (warm workers) beside ``ProcessPoolExecutor``, Dask's ``LocalCluster`` and
   Lithops' localhost executor, each peer in its own process, started before
   its clock starts.
4. Scaling: 1,000 / 10,000 / 100,000 no-op tasks, wall time and client memory.

Writes ``bench/results/latest.md`` and ``bench/results/latest.png`` and prints
the tables. ``--quick`` runs every part at a tenth of the size.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import tasks  # noqa: E402  (bench/tasks.py: the functions every system runs)

MB = 1 << 20
PEER_TIMEOUT = 420  # seconds one peer may take for all its cases


# -- measuring ----------------------------------------------------------------


def rss() -> int:
    """Resident bytes of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's RSS every few milliseconds; ``peak`` is the most
    seen since ``reset``."""

    def __init__(self) -> None:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reset(self) -> int:
        self.peak = now = rss()
        return now

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def case_args(case: str, n: int) -> tuple[Callable[..., Any], list[Any]]:
    if case == "no-op":
        return tasks.noop, list(range(n))
    if case == "10 ms":
        return tasks.sleep_10ms, list(range(n))
    blob = bytes(MB)
    return tasks.size_of, [blob] * n


def check(case: str, n: int, got: list[Any]) -> None:
    want = [MB] * n if case == "1 MB argument" else list(range(n))
    if list(got) != want:
        raise SystemExit(f"wrong results for {case}")


# -- peers (each in its own process) ------------------------------------------


def run_peer(name: str, workers: int, sizes: dict[str, int]) -> dict[str, Any]:
    """Start the peer (timed apart), then time each case end to end."""
    out: dict[str, Any] = {"cases": {}}
    t0 = time.perf_counter()
    if name == "ProcessPoolExecutor":
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers)
        list(pool.map(tasks.noop, range(workers)))

        def run(fn: Callable[..., Any], args: list[Any]) -> list[Any]:
            return list(pool.map(fn, args))

        close = pool.shutdown
    elif name == "Dask":
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
        client.gather(client.map(tasks.noop, range(workers), pure=False))

        def run(fn: Callable[..., Any], args: list[Any]) -> list[Any]:
            return client.gather(client.map(fn, args, pure=False))

        def close() -> None:
            client.close()
            cluster.close()
    elif name == "Lithops":
        import lithops

        # Its workers import bench/tasks.py from the path: Lithops' own module
        # shipping re-extracts the module for every job under workers that
        # already run, and some calls then find it half written.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(HERE), os.environ.get("PYTHONPATH")])
        )
        # data_limit: off, as a user moving 1 MB arguments would set it (its
        # default refuses a job whose arguments pass 4 MiB).
        config = {
            "lithops": {
                "backend": "localhost",
                "storage": "localhost",
                "log_level": "WARNING",
                "data_limit": False,
            },
            "localhost": {"runtime": sys.executable, "worker_processes": workers},
        }
        fexec = lithops.FunctionExecutor(config=config)
        fexec.map(tasks.noop, range(workers), include_modules=[])
        fexec.get_result()

        def run(fn: Callable[..., Any], args: list[Any]) -> list[Any]:
            fexec.map(fn, args, include_modules=[])
            return fexec.get_result()

        close = fexec.clean
    else:
        raise SystemExit(f"unknown peer {name}")
    out["startup"] = time.perf_counter() - t0
    for case, n in sizes.items():
        fn, args = case_args(case, n)
        t0 = time.perf_counter()
        try:
            got = run(fn, args)
        except Exception as exc:  # reported in the table, the other cases still run
            out.setdefault("errors", {})[case] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        out["cases"][case] = time.perf_counter() - t0
        check(case, n, got)
        print(
            f"    {name} {case}: {out['cases'][case]:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    close()
    return out


def peer_in_subprocess(
    name: str, workers: int, sizes: dict[str, int]
) -> dict[str, Any]:
    print(f"  {name} ...", flush=True)
    cmd = [
        sys.executable,
        __file__,
        "--peer",
        name,
        "--workers",
        str(workers),
        "--sizes",
        json.dumps(sizes),
    ]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=PEER_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {PEER_TIMEOUT} s"}
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"error": (lines[-1] if lines else f"exit code {proc.returncode}")[:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the client probe (its own process) ---------------------------------------


def client_probe(workers: int, submits: int, scales: list[int]) -> dict[str, Any]:
    """Part 2 and 4, in a fresh process that talks to the local cloud."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import wait as wait_all

    from starburst_sdk import Plan

    out: dict[str, Any] = {}
    sampler = PeakRss()
    with Plan(workers=workers, idle_timeout=120) as plan:
        # Open the session and launch the workers first; they are still in
        # their cold start while the submits below pile up as pending work.
        first = plan.submit(tasks.noop, -1)
        while plan.status().wave < 1:
            time.sleep(0.05)
        time.sleep(0.5)
        gc.collect()
        base = sampler.reset()
        t0 = time.perf_counter()
        futures = [plan.submit(tasks.noop, i) for i in range(submits)]
        t_submit = time.perf_counter() - t0
        held = rss() - base
        status = plan.status()
        out.update(
            submit_rate=submits / t_submit,
            submit_seconds=t_submit,
            pending_at_end=status.pending,
            bytes_per_pending=held / submits,
            peak_bytes_per_future=(sampler.peak - base) / submits,
            started_before_workers=not first.done(),
        )
        wait_all(futures)
        out["submit_end_to_end"] = time.perf_counter() - t0
        out["submit_task_objects"] = len(plan.registry.task_ids) - 1
        del futures
        # The baselines come after, so that the plan's figures are read on a
        # fresh heap; the bare futures in a process of their own for the same
        # reason.
        with ProcessPoolExecutor(workers) as pool:
            pool.submit(tasks.noop, 0).result()
            gc.collect()
            t0 = time.perf_counter()
            fs = [pool.submit(tasks.noop, i) for i in range(submits)]
            out["ppe_submit_rate"] = submits / (time.perf_counter() - t0)
            wait_all(fs)
            del fs
        bare = subprocess.run(
            [sys.executable, __file__, "--bare-futures", str(submits)],
            capture_output=True,
            text=True,
            check=True,
        )
        out["bare_future_bytes"] = float(bare.stdout.strip().splitlines()[-1])

        out["scaling"] = []
        for n in scales:
            gc.collect()
            base = sampler.reset()
            t0 = time.perf_counter()
            got = list(plan.map(tasks.noop, range(n)))
            wall = time.perf_counter() - t0
            check("no-op", n, got)
            del got
            rss_growth = sampler.peak - base
            # The same map again under tracemalloc (slower; not timed): the
            # peak of Python allocations, which heap reuse cannot hide.
            gc.collect()
            tracemalloc.start()
            got = list(plan.map(tasks.noop, range(n)))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            del got
            out["scaling"].append(
                {"n": n, "wall": wall, "peak_bytes": peak, "rss_growth": rss_growth}
            )
            print(f"    scaling {n}: {wall:.2f} s", file=sys.stderr, flush=True)
    sampler.close()
    return out


# -- starburst on the local cloud ---------------------------------------------


def cold_run(
    label: str, body: Callable[[Any], None], **plan_kwargs: Any
) -> dict[str, Any]:
    """A fresh plan: time ``body`` from the first call until the last result
    (the workers' cold start included); the modelled Fargate bill once its
    workers are stopped."""
    from starburst_sdk import Plan

    with Plan(**plan_kwargs) as plan:
        wall = timed(lambda: body(plan))
    out = {
        "wall": wall,
        "cost": plan.cost(),
        "task_objects": len(plan.registry.task_ids),
        "workers_started": len(plan.registry.all()),
    }
    print(
        f"  {label}: {wall:.2f} s, {out['task_objects']} task objects, "
        f"{out['workers_started']} workers, ${out['cost']:.5f}",
        flush=True,
    )
    return out


def starburst_runs(
    args: argparse.Namespace, sizes: dict[str, int], tmp: str
) -> dict[str, Any]:
    from starburst_local.cloud import LocalCloud

    w, n = args.workers, args.tasks
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    with LocalCloud(
        tmp, ls_port=0, runner_port=0, quota=64, cold_start=args.cold_start
    ) as cloud:
        res["cloud_up"] = time.perf_counter() - t0
        print(
            f"local cloud up in {res['cloud_up']:.0f} s "
            f"(emulated cold start {args.cold_start:g} s)",
            flush=True,
        )
        os.environ.update(cloud.env)
        size = {"workers": w, "cpu": 1, "memory": "2GB", "idle_timeout": 120}

        print(f"1. {n:,} no-op tasks from a cold start, {w} workers", flush=True)
        per = n // 100
        batches = [list(range(i, i + per)) for i in range(0, n, per)]
        res["naive"] = cold_run(
            "naive map",
            lambda p: check("no-op", n, p.map(tasks.noop, range(n))),
            **size,
        )
        res["hand"] = cold_run(
            "hand-batched, 100 tasks",
            lambda p: check(
                "no-op",
                n,
                [x for b in p.map(tasks.noop_batch, batches, chunksize=1) for x in b],
            ),
            **size,
        )
        one = args.one_per_task
        res["one"] = cold_run(
            f"max_tasks_per_worker=1, {one} tasks",
            lambda p: check("no-op", one, p.map(tasks.noop, range(one))),
            max_tasks_per_worker=1,
            **size,
        )
        res["one"]["n"] = one

        print(f"2/4. client submit rate and memory, scaling ({w} workers)", flush=True)
        cmd = [
            sys.executable,
            __file__,
            "--client",
            "--workers",
            str(w),
            "--submits",
            str(args.submits),
            "--scales",
            json.dumps(args.scales),
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, **cloud.env},
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise SystemExit(f"the client probe failed:\n{proc.stderr[-3000:]}")
        res["client"] = json.loads(proc.stdout.strip().splitlines()[-1])

        print(f"3. throughput on warm workers ({w} workers)", flush=True)
        from starburst_sdk import Plan

        with Plan(**size) as plan:
            res["warm_start"] = timed(lambda: list(plan.map(tasks.noop, range(2 * w))))
            res["cases"] = {}
            for case, count in sizes.items():
                fn, fargs = case_args(case, count)
                t0 = time.perf_counter()
                got = list(plan.map(fn, fargs))
                wall = time.perf_counter() - t0
                check(case, count, got)
                res["cases"][case] = wall
                print(f"    starburst {case}: {wall:.2f} s", flush=True)
            res["warm_naive"] = timed(
                lambda: check("no-op", n, plan.map(tasks.noop, range(n)))
            )
            res["warm_hand"] = timed(
                lambda: check(
                    "no-op",
                    n,
                    [
                        x
                        for b in plan.map(tasks.noop_batch, batches, chunksize=1)
                        for x in b
                    ],
                )
            )
    return res


# -- report -------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def _ratio(x: float) -> str:
    """0.048×, 1.00×, 6.89×, 21×: whole numbers from 10, else two decimals
    (two significant digits below 0.1)."""
    if x < 0.1:
        return f"{x:.2g}×"
    return f"{x:.2f}×" if x < 10 else f"{x:,.0f}×"


def fmt_rate(n: int, seconds: float | None) -> str:
    return "–" if not seconds else f"{n / seconds:,.0f}"


def report(
    args: argparse.Namespace,
    sizes: dict[str, int],
    sb: dict[str, Any],
    peers: dict[str, dict[str, Any]],
    load: tuple[str, str],
    total: float,
) -> str:
    n, w = args.tasks, args.workers
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    L: list[str] = [
        f"# starburst benchmark, {stamp}",
        "",
        f"Machine: {machine()}. Load average at start {load[0]}, at end {load[1]} "
        "(the machine is shared; figures are noisy under load). "
        f"Local cloud: LocalStack + the local Fargate runner, emulated cold start "
        f"{args.cold_start:g} s per worker; {w} workers of 1 vCPU / 2 GB; prices "
        "us-east-1 On-Demand. Whole run: "
        f"{total / 60:.1f} min.",
        "",
        f"## 1. {n:,} no-op tasks from a cold start",
        "",
        "| way | task objects | workers | wall s | wall vs hand | modelled Fargate $ "
        "| $ vs hand |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    hand = sb["hand"]
    one = sb["one"]
    waves = math.ceil(one["n"] / w)
    one_wall = one["wall"] / waves * math.ceil(n / w)
    one_cost = one["cost"] / one["n"] * n
    rows = [
        ("naive `map`", sb["naive"]),
        ("hand-batched into 100 tasks", hand),
        (f"`max_tasks_per_worker=1`, measured on {one['n']} tasks", one),
    ]
    for name, r in rows:
        L.append(
            f"| {name} | {r['task_objects']:,} | {r['workers_started']} "
            f"| {r['wall']:.1f} | {r['wall'] / hand['wall']:.2f}× "
            f"| {r['cost']:.4f} | {r['cost'] / hand['cost']:.2f}× |"
        )
    L.append(
        f"| `max_tasks_per_worker=1`, modelled for {n:,} tasks | {n:,} | {n:,} "
        f"| {one_wall:,.0f} | {one_wall / hand['wall']:,.0f}× | {one_cost:.2f} "
        f"| {one_cost / hand['cost']:,.0f}× |"
    )
    ratio = sb["naive"]["wall"] / hand["wall"]
    warm_ratio = sb["warm_naive"] / sb["warm_hand"]
    L += [
        "",
        f"Naive / hand-batched wall: **{ratio:.2f}** (target ≤ 1.1); on warm "
        f"workers (start-up excluded) {sb['warm_naive']:.2f} s / "
        f"{sb['warm_hand']:.2f} s = **{warm_ratio:.2f}**. The one-worker-per-task "
        f"row is modelled from the measured one: {waves} wave(s) of {w} workers "
        f"scaled to {math.ceil(n / w):,} waves, and its bill per task times {n:,} "
        "(each worker bills at least a minute).",
        "",
    ]

    c = sb["client"]
    L += [
        f"## 2. Client: {args.submits:,} `submit` calls",
        "",
        "| measure | starburst | baseline (same run) | target |",
        "| --- | ---: | ---: | --- |",
        f"| submit calls per second | {c['submit_rate']:,.0f} "
        f"| {c['ppe_submit_rate']:,.0f} (ProcessPoolExecutor.submit) | ≥ 2,000 |",
        f"| RSS per pending future, bytes | {c['bytes_per_pending']:,.0f} "
        f"| {c['bare_future_bytes']:,.0f} (a bare `Future`) | ≤ 2,048 |",
        f"| peak RSS per future while submitting, bytes "
        f"| {c['peak_bytes_per_future']:,.0f} | | |",
        f"| all {args.submits:,} done, from the first submit, s "
        f"| {c['submit_end_to_end']:.1f} | | |",
        "",
        f"The submits ran while the workers were still in their cold start "
        f"(first result not yet in: {c['started_before_workers']}), so the futures "
        f"were pending: {c['pending_at_end']:,} still unsent when the loop ended. "
        "RSS is read from /proc in a separate process before and after the "
        "loop; the futures list itself is included. They went out as "
        f"{c['submit_task_objects']:,} task objects.",
        "",
    ]

    names = ["starburst", "ProcessPoolExecutor", "Dask", "Lithops"]
    L += [
        f"## 3. Throughput, tasks per second ({w} workers or processes, "
        "start-up excluded)",
        "",
        "| tasks | "
        + " | ".join(names)
        + " | starburst vs Dask | starburst vs Lithops |",
        "| --- |" + " ---: |" * (len(names) + 2),
    ]
    for case, count in sizes.items():
        counts = [count] + [peers[p]["sizes"][case] for p in names[1:]]
        walls = [sb["cases"][case]] + [
            peers[p].get("cases", {}).get(case) for p in names[1:]
        ]
        rates = [k / s if s else None for k, s in zip(counts, walls, strict=True)]
        cells = [
            f"{r:,.0f}" + (f" ({k:,} tasks)" if k != count else "") if r else "–"
            for r, k in zip(rates, counts, strict=True)
        ]
        vs = [_ratio(rates[0] / r) if r else "–" for r in (rates[2], rates[3])]
        L.append(
            f"| {count:,} {case} | " + " | ".join(cells) + " | " + " | ".join(vs) + " |"
        )
    starts = [
        f"starburst {sb['warm_start']:.1f} s (first map, with the cold start)"
    ] + [f"{p} {peers[p]['startup']:.1f} s" for p in names[1:] if "startup" in peers[p]]
    L += [
        "",
        "Start-up, not in the figures above: " + "; ".join(starts) + ".",
        "\"vs\" is starburst's rate over the peer's (above 1: starburst is "
        "faster). 10 ms tasks sleep; 1 MB tasks take a 1 MB `bytes` argument and "
        "return its length.",
    ]
    for p in names[1:]:
        if "error" in peers[p]:
            L.append(f"{p} could not run here: `{peers[p]['error']}`.")
        for case, err in peers[p].get("errors", {}).items():
            L.append(f"{p} failed the {case} case: `{err}`.")
    noop = sb["cases"]["no-op"]
    overheads = [f"starburst {noop / sizes['no-op'] * 1e6:,.0f} µs"] + [
        f"{p} {peers[p]['cases']['no-op'] / peers[p]['sizes']['no-op'] * 1e6:,.0f} µs"
        for p in names[1:]
        if "no-op" in peers[p].get("cases", {})
    ]
    L += [
        "",
        f"{sizes['no-op']:,} no-op tasks end to end on warm workers: "
        f"**{noop:.2f} s** (target ≤ 10 s on 2 cores). Per-task overhead (no-op "
        "wall time over the number of tasks, "
        f"{w} workers): " + "; ".join(overheads) + ".",
        "",
    ]

    L += [
        "## 4. Scaling, no-op tasks on warm workers",
        "",
        "| tasks | wall s | tasks/s | wall vs smallest | client peak, MB "
        "| bytes per task | client RSS growth, MB | $ warm pool | $ fresh plan |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    from starburst_sdk import _cost

    per_second = _cost.rate("us-east-1").per_second(1, 2)
    first = c["scaling"][0]
    for s in c["scaling"]:
        warm = w * s["wall"] * per_second
        fresh = w * _cost.billed_seconds(args.cold_start + s["wall"]) * per_second
        L.append(
            f"| {s['n']:,} | {s['wall']:.2f} | {s['n'] / s['wall']:,.0f} "
            f"| {s['wall'] / first['wall']:.1f}× | {s['peak_bytes'] / MB:.1f} "
            f"| {s['peak_bytes'] / s['n']:,.0f} | {s['rss_growth'] / MB:.1f} "
            f"| {warm:.6f} | {fresh:.4f} |"
        )
    L += [
        "",
        "Client peak: the peak of the client's Python allocations (tracemalloc) "
        "during the same map run a second time, untimed; it includes the "
        "caller's list of results. RSS growth: over the RSS just before the "
        "timed map, sampled every 5 ms (freed memory is reused, so it can read "
        f"low). Cost, modelled for {w} Fargate workers of 1 vCPU / 2 GB "
        "(us-east-1 On-Demand): *warm pool* is what the work adds to workers "
        f"already running ({w} × wall); *fresh plan* is a plan started for this "
        f"work alone ({w} × the {args.cold_start:g} s cold start plus the wall, "
        "each worker billed at least a minute), which stays at the one-minute "
        "minimum until the work outgrows it.",
    ]
    return "\n".join(L) + "\n"


def plot(
    path: Path,
    sizes: dict[str, int],
    sb: dict[str, Any],
    peers: dict[str, dict[str, Any]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["starburst", "ProcessPoolExecutor", "Dask", "Lithops"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.2
    for i, name in enumerate(names):
        rates = []
        for case, count in sizes.items():
            if name != "starburst":
                count = peers[name]["sizes"][case]
            s = (
                sb["cases"][case]
                if name == "starburst"
                else (peers[name].get("cases", {}).get(case))
            )
            rates.append(count / s if s else 0)
        ax1.bar([x + i * width for x in range(len(sizes))], rates, width, label=name)
    ax1.set_xticks(
        [x + 1.5 * width for x in range(len(sizes))],
        [f"{n:,} {c}" for c, n in sizes.items()],
    )
    ax1.set_yscale("log")
    ax1.set_ylabel("tasks per second (log)")
    ax1.set_title("Throughput, start-up excluded")
    ax1.legend(fontsize=8)
    scaling = sb["client"]["scaling"]
    ns = [s["n"] for s in scaling]
    ax2.plot(ns, [s["wall"] for s in scaling], "o-", label="wall s")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("no-op tasks")
    ax2.set_ylabel("wall seconds (log)")
    ax3 = ax2.twinx()
    ax3.plot(
        ns,
        [s["peak_bytes"] / MB for s in scaling],
        "s--",
        color="tab:red",
        label="client peak RSS MB",
    )
    ax3.set_ylabel("client peak RSS growth, MB")
    ax2.set_title("starburst scaling (warm workers)")
    fig.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- main ---------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--cold-start",
        type=float,
        default=30.0,
        help="seconds the local runner delays each worker's start",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every part at a tenth of the size, 5 s cold start",
    )
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-futures", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--submits", type=int, default=100_000, help=argparse.SUPPRESS)
    parser.add_argument(
        "--scales", default="[1000, 10000, 100000]", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.peer:
        print(json.dumps(run_peer(args.peer, args.workers, json.loads(args.sizes))))
        return 0
    if args.bare_futures:
        from concurrent.futures import Future

        gc.collect()
        base = rss()
        bare = [Future() for _ in range(args.bare_futures)]
        print((rss() - base) / len(bare))
        return 0
    if args.client:
        print(
            json.dumps(
                client_probe(args.workers, args.submits, json.loads(args.scales))
            )
        )
        return 0

    scale = 10 if args.quick else 1
    args.tasks = 10_000 // scale
    args.one_per_task = 2 * args.workers
    args.submits //= scale
    args.scales = [n // scale for n in json.loads(args.scales)]
    if args.quick:
        args.cold_start = min(args.cold_start, 5.0)
    sizes = {
        "no-op": 10_000 // scale,
        "10 ms": 1_000 // scale,
        "1 MB argument": 100 // scale,
    }
    started = time.perf_counter()
    load0 = " ".join(f"{x:.1f}" for x in os.getloadavg())

    print("3. peers, each in its own process", flush=True)
    # Lithops' localhost executor runs a few calls per second here (files per
    # call, a process per activation), so it gets fewer tasks; the table
    # compares rates and says how many each ran.
    peer_sizes = {p: dict(sizes) for p in ("ProcessPoolExecutor", "Dask")}
    peer_sizes["Lithops"] = {
        "no-op": 200 // scale,
        "10 ms": 100 // scale,
        "1 MB argument": 20 // scale,
    }
    peers = {
        p: peer_in_subprocess(p, args.workers, s) | {"sizes": s}
        for p, s in peer_sizes.items()
    }
    for p, r in peers.items():
        print(f"  {p}: {r.get('error') or r}", flush=True)
    with tempfile.TemporaryDirectory(prefix="starburst-bench-") as tmp:
        sb = starburst_runs(args, sizes, tmp)
    load1 = " ".join(f"{x:.1f}" for x in os.getloadavg())
    table = report(
        args, sizes, sb, peers, (load0, load1), time.perf_counter() - started
    )
    RESULTS.mkdir(exist_ok=True)
    name = "quick" if args.quick else "latest"
    (RESULTS / f"{name}.md").write_text(table)
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            {"starburst": sb, "peers": peers, "sizes": sizes}, indent=1, default=str
        )
    )
    plot(RESULTS / f"{name}.png", sizes, sb, peers)
    print("\n" + table)
    print(f"written: {RESULTS / (name + '.md')}, {RESULTS / (name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
