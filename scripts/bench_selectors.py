"""Time and peak memory of the embedding selectors on SST-2-sized data.

Each measurement runs in its own subprocess so peak RSS (``ru_maxrss``) is
that method's alone. Dense numpy references run in the same invocation:

* ``kcenter``: the textbook loop (one full distance vector per pick, the
  STYLE.md sketch) on a ``--ref-n`` row subsample, with ours on the same rows;
  picks must match.
* ``herding``: a dense Gram-matrix herding (``ref_n x ref_n`` kernel, the
  DeepCore-style layout) on the same subsample; picks must match.
* ``kmeans``: scikit-learn ``KMeans`` (Lloyd, same k and iterations) on all rows.

Usage::

    python scripts/bench_selectors.py --embeddings sst2_train_minilm.npy
    python scripts/bench_selectors.py            # seeded N(0, 1) 67,349 x 384 float32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_SST2, DIM = 67_349, 384


def load(path: str | None, n: int) -> np.ndarray:
    if path:
        return np.ascontiguousarray(np.load(path)[:n], dtype=np.float32)
    return np.random.default_rng(0).normal(size=(n, DIM)).astype(np.float32)


def kcenter_dense_reference(x: np.ndarray, budget: int, first: int) -> np.ndarray:
    """Textbook greedy: a fresh (n,) distance vector per pick, no laziness."""
    x = x.astype(np.float64)
    picks = [first]
    near = np.linalg.norm(x - x[first], axis=1)
    near[first] = -1
    for _ in range(budget - 1):
        i = int(near.argmax())
        picks.append(i)
        near = np.minimum(near, np.linalg.norm(x - x[i], axis=1))
        near[picks] = -1
    return np.array(picks)


def herding_dense_reference(x: np.ndarray, budget: int) -> np.ndarray:
    """Herding from a precomputed n x n Gram matrix (O(n^2) memory)."""
    gram = x @ x.T
    n = len(x)
    mean_k = gram.mean(axis=1, dtype=np.float64)
    diag = np.diag(gram).astype(np.float64)
    g = np.zeros(n)  # K @ indicator(picks)
    picks: list[int] = []
    for t in range(budget):
        obj = diag + 2 * (g - (t + 1) * mean_k)
        obj[picks] = np.inf
        i = int(obj.argmin())
        picks.append(i)
        g += gram[:, i]
    return np.array(picks)


def worker(args: argparse.Namespace) -> None:
    # Imports before the baseline so time and memory are the method's alone.
    if args.worker == "kmeans-ref":
        import sklearn.cluster  # noqa: F401
    else:
        import dataselect.selectors  # noqa: F401
    x = load(args.embeddings, args.n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    budget = max(1, round(args.frac * len(x)))
    t0, c0 = time.perf_counter(), time.process_time()
    if args.worker == "kcenter-ref":
        out = kcenter_dense_reference(x, budget, args.first)
    elif args.worker == "herding-ref":
        out = herding_dense_reference(x, budget)
    elif args.worker == "kmeans-ref":
        from sklearn.cluster import KMeans

        KMeans(128, init="random", n_init=1, max_iter=20, tol=0, random_state=0).fit(x)
        out = np.zeros(0)
    else:
        from dataselect.selectors import get_selector

        params = {"n_clusters": 128} if args.worker == "kmeans" else {}
        out = get_selector(args.worker, **params).select({"embedding": x}, budget, 0).indices
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "data_rss_mb": base,
                      "picks": out[:budget].tolist() if args.keep_picks else None}))


def run(method: str, frac: float, n: int, emb: str | None, **kw: object) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--frac", str(frac), "--n", str(n)]
    if emb:
        cmd += ["--embeddings", emb]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", help="(n, d) .npy; default: seeded N(0, 1) float32")
    ap.add_argument("--n", type=int, default=N_SST2)
    ap.add_argument("--fracs", type=float, nargs="+", default=[0.05, 0.10, 0.20])
    ap.add_argument("--methods", nargs="+", default=["kcenter", "kmeans", "herding"])
    ap.add_argument("--ref-n", type=int, default=10_000, help="rows for the dense references")
    ap.add_argument("--json", help="also write all figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--frac", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--keep-picks", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    x = load(args.embeddings, args.n)
    src = f"{args.embeddings} (real embeddings)" if args.embeddings else "seeded N(0,1) float32 (NOT real embeddings)"
    print(f"data: {x.shape[0]} x {x.shape[1]} from {src}; cpus={os.cpu_count()}; "
          f"loadavg={os.getloadavg()[0]:.1f}")
    rows = []

    def show(r: dict) -> None:
        rows.append(r)
        print(f"{r['method']:<12} {r['n']:>6} {r['frac']:>5.0%} wall {r['wall_s']:8.2f} s  "
              f"cpu {r['cpu_s']:8.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MiB "
              f"(after load {r['data_rss_mb']:.0f} MiB){r.get('note', '')}", flush=True)

    for method in args.methods:
        for frac in args.fracs:
            show({"method": method, "n": args.n, "frac": frac, **run(method, frac, args.n, args.embeddings)})
        if method == "kmeans":
            ref = run("kmeans-ref", args.fracs[0], args.n, args.embeddings)
            ours = next(r for r in rows if r["method"] == "kmeans")
            show({"method": "kmeans-ref", "n": args.n, "frac": args.fracs[0], **ref,
                  "note": f"  sklearn Lloyd k=128 20 it; ours/ref wall {ours['wall_s'] / ref['wall_s']:.2f}"})
        if method in ("kcenter", "herding"):
            for frac in args.fracs:
                kw = {"keep_picks": True}
                ours = run(method, frac, args.ref_n, args.embeddings, **kw)
                if method == "kcenter":
                    kw["first"] = ours["picks"][0]
                ref = run(f"{method}-ref", frac, args.ref_n, args.embeddings, **kw)
                same = ours.pop("picks") == ref.pop("picks")
                show({"method": method, "n": args.ref_n, "frac": frac, **ours})
                show({"method": f"{method}-ref", "n": args.ref_n, "frac": frac, **ref,
                      "note": f"  speed-up ref/ours {ref['wall_s'] / ours['wall_s']:.1f}x, "
                              f"peak RSS ratio {ref['peak_rss_mb'] / ours['peak_rss_mb']:.2f}, "
                              f"same picks: {same}"})
    if args.json:
        Path(args.json).write_text(json.dumps({"source": src, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
