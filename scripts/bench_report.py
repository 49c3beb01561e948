"""Cost of the report's paired comparison against the resampling loops a user would write.

One comparison = one selector vs random at one fraction: 5 seeds x 872 eval
rows, all four metrics. Three ways:

* ``ours``: :func:`dataselect.report.stats.paired_difference` (pseudo-values
  and two-way variance components, closed form);
* ``numpy loop``: the two-way bootstrap of seeds and rows (2,000 resamples)
  with numpy metrics (``np.bincount`` confusion counts) -- the usual recipe
  (Dror et al. 2018), which this project used before it was found too wide;
* ``sklearn loop``: the same with ``classification_metrics`` (sklearn) per
  seed and arm, timed on 100 resamples and scaled to 2,000.

Prints seconds per comparison and the ratios. Usage::

    python scripts/bench_report.py [--study runs/probe]   # + the whole report stage on a study
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from dataselect.report.stats import paired_difference
from dataselect.train.metrics import METRICS, classification_metrics

M, S, B, K = 872, 5, 2000, 2


def _data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = rng.integers(0, K, M)
    pa = np.where(rng.random((S, M)) < 0.8, y, 1 - y)
    pb = np.where(rng.random((S, M)) < 0.8, y, 1 - y)
    return y, pa, pb


def ours(y, pa, pb) -> float:
    t = time.perf_counter()
    for metric in METRICS:
        paired_difference(y, pa, pb, K, metric)
    return time.perf_counter() - t


def _np_metrics(y, p):
    cm = np.bincount(y * K + p, minlength=K * K).reshape(K, K).astype(float)
    tp, pp, ap = np.diag(cm), cm.sum(0), cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(pp > 0, tp / pp, 0).mean()
        rec = np.where(ap > 0, tp / ap, 0).mean()
        f1 = np.where(pp + ap > 0, 2 * tp / (pp + ap), 0).mean()
    return tp.sum() / len(y), f1, prec, rec


def numpy_loop(y, pa, pb, n_boot: int = B) -> float:
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(n_boot):
        rows = rng.integers(0, M, M)
        seeds = rng.integers(0, S, S)
        d = [np.subtract(_np_metrics(y[rows], pa[s, rows]), _np_metrics(y[rows], pb[s, rows])) for s in seeds]
        np.mean(d, axis=0)
    return (time.perf_counter() - t) * B / n_boot


def sklearn_loop(y, pa, pb, n_boot: int = 100) -> float:
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(n_boot):
        rows = rng.integers(0, M, M)
        for s in rng.integers(0, S, S):
            classification_metrics(y[rows], pa[s, rows], K)
            classification_metrics(y[rows], pb[s, rows], K)
    return (time.perf_counter() - t) * B / n_boot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", help="also time `python -m dataselect report STUDY` (whole process)")
    args = ap.parse_args()
    print("loadavg at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    y, pa, pb = _data(np.random.default_rng(0))
    ours(y, pa, pb)  # warm-up (BLAS, imports)
    t_ours = min(ours(y, pa, pb) for _ in range(3))
    t_np = numpy_loop(y, pa, pb)
    t_sk = sklearn_loop(y, pa, pb)
    print(f"one comparison (4 metrics, {S} seeds x {M} rows; loops {B} resamples):")
    print(f"  ours          {t_ours:8.3f} s")
    print(f"  numpy loop    {t_np:8.3f} s   ratio {t_np / t_ours:6.1f}x")
    print(f"  sklearn loop  {t_sk:8.3f} s   ratio {t_sk / t_ours:6.1f}x  (from 100 resamples)")
    if args.study:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dataselect", "report", args.study], check=True,
                       capture_output=True)
        print(f"report stage on {args.study}: {time.perf_counter() - t:.1f} s wall (whole process)")
    print("loadavg at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
