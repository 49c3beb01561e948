"""Time and peak memory of the low-budget selectors (issue 14) on SST-2-sized data.

Each measurement runs in its own subprocess so peak RSS (``ru_maxrss``) is
that method's alone and no per-process memo (k-NN table, EL2N scores) is
shared: every figure is a cold first call, the worst cell of a grid.
Baselines in the same invocation: ``random`` and ``kcenter`` at the same
budgets, and ``el2n`` alone (the difficulty ``ccs`` and ``d2`` compute by
default), so ``ccs``/``d2`` minus ``el2n`` is the selection's own cost; the
``*-column`` presets read a precomputed score column to show it directly.

Usage::

    python scripts/bench_lowbudget.py --embeddings embedding.npy --labels label.npy
    python scripts/bench_lowbudget.py      # seeded 100-blob 67,349 x 384 float32, noisy labels
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from _bench import run_worker  # scripts/ is on sys.path when a script runs

N_SST2, DIM = 67_349, 384

PRESETS: dict[str, tuple[str, dict]] = {
    "random": ("random", {}),
    "kcenter": ("kcenter", {}),
    "el2n": ("el2n", {}),
    "typiclust": ("typiclust", {}),
    "probcover": ("probcover", {}),
    "ccs": ("ccs", {}),
    "ccs-column": ("ccs", {"score": "column:difficulty"}),
    "d2": ("d2", {}),
    "d2-column": ("d2", {"score": "column:difficulty"}),
}


def load(emb: str | None, labels: str | None, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if emb:
        x = np.ascontiguousarray(np.load(emb)[:n], dtype=np.float32)
        n = len(x)
        y = np.load(labels)[:n].astype(np.int64) if labels else rng.integers(0, 2, n)
    else:
        # 100 Gaussian blobs (centre spread 1 per dim, noise 0.5): clustered like
        # sentence embeddings, unlike isotropic noise; labels follow the blob with
        # 10 % flipped.
        centres = rng.normal(size=(100, DIM)).astype(np.float32)
        blob = rng.integers(0, 100, n)
        x = centres[blob] + 0.5 * rng.normal(size=(n, DIM)).astype(np.float32)
        y = (blob % 2) ^ (rng.random(n) < 0.1)
    # A seeded stand-in difficulty for the *-column presets (its values do not change the cost).
    return {"embedding": x, "label": y.astype(np.int64), "difficulty": rng.random(n)}


def worker(args: argparse.Namespace) -> None:
    import torch

    from dataselect.selectors import get_selector

    torch.set_num_threads(1)  # as in a select-stage Ray task (num_cpus=1)
    feats = load(args.embeddings, args.labels, args.n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(feats["label"])
    budget = max(1, round(args.frac * n))
    name, params = PRESETS[args.worker]
    t0, c0 = time.perf_counter(), time.process_time()
    sel = get_selector(name, **params).select(feats, budget, 0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    keep = ("delta", "purity", "covered_fraction", "n_greedy", "capped_fraction", "mean_ball_size",
            "n_clusters", "usable_clusters", "n_pruned", "n_edges")
    info = {k: v for k, v in sel.info.items() if k in keep}
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "data_rss_mb": base,
                      "budget": budget, "unique": int(len(np.unique(sel.indices))), "info": info}))


def run(method: str, frac: float, args: argparse.Namespace) -> dict:
    return run_worker(__file__, method, frac, args.n, embeddings=args.embeddings, labels=args.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", help="(n, d) .npy; default: seeded 100-blob float32")
    ap.add_argument("--labels", help="(n,) .npy; default: blob parity with 10 %% flipped")
    ap.add_argument("--n", type=int, default=N_SST2)
    ap.add_argument("--fracs", type=float, nargs="+", default=[0.05])
    ap.add_argument("--methods", nargs="+", default=list(PRESETS))
    ap.add_argument("--json", help="also write all figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--frac", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    src = (f"{args.embeddings} (real embeddings)" if args.embeddings
           else "seeded 100-blob float32 (NOT real embeddings)")
    load_start = os.getloadavg()
    print(f"data: {args.n} x {DIM} from {src}; labels: {args.labels or 'synthetic'}; "
          f"cpus={os.cpu_count()}; loadavg={load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}",
          flush=True)
    rows: list[dict] = []
    for method in args.methods:
        for frac in args.fracs[:1] if method == "el2n" else args.fracs:
            r = {"method": method, "n": args.n, "frac": frac, **run(method, frac, args)}
            rows.append(r)
            print(f"{method:<11} {r['frac']:>5.0%} budget {r['budget']:>6} wall {r['wall_s']:7.2f} s  "
                  f"cpu {r['cpu_s']:7.2f} s  peak RSS {r['peak_rss_mb']:6.0f} MiB "
                  f"(after load {r['data_rss_mb']:.0f})  unique {r['unique']}  {json.dumps(r['info'])}",
                  flush=True)
    load_end = os.getloadavg()
    print(f"loadavg at the end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"source": src, "loadavg_start": load_start,
                                               "loadavg_end": load_end, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
