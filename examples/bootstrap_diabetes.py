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
two answers agree to floating-point rounding: a worker with another number of
CPUs runs BLAS on another number of threads, which sums in another order and
can change the last bits of a coefficient (about 1e-12 here).
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
        print(
            f"session {plan.session_id}: {args.replicates} bootstrap refits "
            f"on up to {args.workers} Fargate workers ({plan.size})"
        )
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
    agree = coefs.shape == serial.shape and np.allclose(
        coefs, serial, rtol=1e-9, atol=0
    )
    worst = (
        float(np.max(np.abs(coefs - serial))) if coefs.shape == serial.shape else None
    )

    print(
        f"\nwall time {wall:.1f} s on {len(workers)} worker(s); "
        f"serial on this machine {serial_wall:.1f} s"
    )
    print(
        f"Fargate cost of this run ({plan.config.region} On-Demand, 1-minute "
        f"minimum per worker): ${cost:.4f}"
    )
    if not agree:
        print(
            f"MISMATCH: the Fargate answer differs from the serial run "
            f"(largest difference {worst})",
            file=sys.stderr,
        )
        return 1
    print(
        f"verified: all {args.replicates} refits match the serial run "
        f"(largest difference {worst:.1e}, floating-point rounding)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
