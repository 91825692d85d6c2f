"""Bootstrap confidence intervals for a ridge regression, on Fargate workers.

The data is scikit-learn's bundled diabetes study (442 patients, 10 baseline
measurements, disease progression after one year). Each task refits the model
on one bootstrap resample of the patients; the spread of the refitted
coefficients gives a 95% confidence interval for each measurement's effect.

Run it on the local cloud (what `make demo` does):

    starburst-cli local up
    eval "$(starburst-cli local env)"
    uv run python examples/bootstrap_diabetes.py
    starburst-cli local down

The script repeats the work serially on this machine and exits 1 unless the
two answers agree.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from starburst_sdk import Plan

ALPHA = 0.1


def refit(replicate: int) -> np.ndarray:
    """Coefficients of a ridge fit on bootstrap resample number ``replicate``."""
    data = load_diabetes()
    rng = np.random.default_rng(replicate)
    rows = rng.integers(0, len(data.target), size=len(data.target))
    model = Ridge(alpha=ALPHA).fit(data.data[rows], data.target[rows])
    return model.coef_


def intervals(coefs: np.ndarray) -> np.ndarray:
    return np.percentile(coefs, [2.5, 97.5], axis=0).T


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=400)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    started = time.perf_counter()
    with Plan(workers=args.workers, cpu=1, memory="2GB", idle_timeout=30) as plan:
        print(f"session {plan.session_id}: {args.replicates} bootstrap refits "
              f"on up to {args.workers} Fargate workers ({plan.size})")
        coefs = np.array(list(plan.map(refit, range(args.replicates))))
    wall = time.perf_counter() - started
    workers = plan.registry.all()
    cost = plan.cost()

    names = load_diabetes().feature_names
    ci = intervals(coefs)
    point = Ridge(alpha=ALPHA).fit(*load_diabetes(return_X_y=True)).coef_
    print("\n95% bootstrap confidence intervals (ridge, alpha=0.1):")
    print(f"  {'measurement':<12}{'estimate':>10}{'2.5%':>10}{'97.5%':>10}")
    for name, est, (lo, hi) in zip(names, point, ci, strict=True):
        flag = "" if lo <= 0 <= hi else "  *"
        print(f"  {name:<12}{est:>10.1f}{lo:>10.1f}{hi:>10.1f}{flag}")
    print("  (* the interval excludes zero)")

    serial_started = time.perf_counter()
    serial = np.array([refit(i) for i in range(args.replicates)])
    serial_wall = time.perf_counter() - serial_started
    agree = np.array_equal(serial, coefs)

    print(f"\nwall time {wall:.1f} s on {len(workers)} worker(s); "
          f"serial on this machine {serial_wall:.1f} s")
    print(f"Fargate cost of this run (us-east-1 On-Demand, 1-minute minimum per "
          f"worker): ${cost:.4f}")
    if not agree:
        print("MISMATCH: the Fargate answer differs from the serial run", file=sys.stderr)
        return 1
    print(f"verified: all {args.replicates} refits match the serial run exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
