"""Time and peak memory of the issue-8 selectors on SST-2-sized data.

Each measurement runs in its own subprocess so peak RSS (``ru_maxrss``) is
that method's alone. Baselines run in the same invocation:

* ``random`` and ``kcenter`` (cosine) at the same budgets: every ratio in
  the table is wall time over ``kcenter``'s at the same fraction;
* ``grand-naive``: GraNd by one autograd backward pass per row (the
  definition) on a ``--ref-n`` row subsample, against ``grand_scores``'s
  ``vmap(grad)`` on the same rows and heads; scores must agree to 1e-5.

Importance selectors (grand, el2n, forgetting) cost the same at any budget
(they score every row), so they run at the first fraction only.

Usage::

    python scripts/bench_importance.py --embeddings embedding.npy --labels label.npy
    python scripts/bench_importance.py      # seeded N(0, 1) 67,349 x 384 float32, random labels
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

# The parameters recommended for experiments/probe.yaml (see the PR message).
PRESETS: dict[str, tuple[str, dict]] = {
    "random": ("random", {}),
    "kcenter": ("kcenter", {"metric": "cosine"}),
    "semantic_lexical": ("semantic_lexical", {"lexical_weight": 0.3}),
    "stratified_coreset": ("stratified_coreset", {}),
    "grand": ("grand", {}),
    "el2n": ("el2n", {}),
    "forgetting": ("forgetting", {}),
    "forgetting-streaming": ("forgetting", {"mode": "streaming"}),
    "pipeline": ("pipeline", {"stages": [
        {"name": "perplexity", "params": {"q_low": 0.05, "q_high": 0.95}, "keep": 0.6},
        {"name": "semantic_lexical", "params": {"lexical_weight": 0.3}, "keep": 0.5},
        {"name": "el2n", "params": {"keep": "lowest"}}]}),
    "fusion": ("fusion", {"members": [
        {"name": "el2n", "weight": 0.5},
        {"name": "kcenter", "params": {"metric": "cosine"}, "rows": "budget", "weight": 0.5}]}),
}
BUDGET_FREE = {"grand", "el2n", "forgetting", "forgetting-streaming"}


def load(emb: str | None, labels: str | None, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if emb:
        x = np.ascontiguousarray(np.load(emb)[:n], dtype=np.float32)
    else:
        x = rng.normal(size=(n, DIM)).astype(np.float32)
    n = len(x)
    y = np.load(labels)[:n].astype(np.int64) if labels else rng.integers(0, 2, n)
    # Text metrics and perplexity are not exported with the embeddings: seeded
    # stand-ins with SST-2-like ranges (their values do not change the cost).
    return {"embedding": x, "label": y, "perplexity": rng.lognormal(4.0, 0.6, n),
            "mattr": np.minimum(1.0, rng.beta(8, 1, n)), "mtld": rng.lognormal(2.0, 0.8, n),
            "token_count": rng.integers(1, 50, n).astype(np.float64),
            "flesch_reading_ease": rng.normal(70, 25, n)}


def worker(args: argparse.Namespace) -> None:
    import torch

    from dataselect.selectors import get_selector
    from dataselect.selectors.dynamics import head_logits, init_head, standardize
    from dataselect.selectors.grand import grand_scores

    torch.set_num_threads(1)  # as in a select-stage Ray task (num_cpus=1)
    feats = load(args.embeddings, args.labels, args.n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(feats["label"])
    budget = max(1, round(args.frac * n))
    out: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if args.worker in ("grand-naive", "grand-vmap"):
        x, y = standardize(feats["embedding"]), feats["label"]
        heads = [init_head(x.shape[1], 2, 128, s) for s in range(2)]
        grand_scores(heads[:1], x[:2], y[:2])  # vmap's one-off tracing (~1.5 s) is not per row
        t0, c0 = time.perf_counter(), time.process_time()
        if args.worker == "grand-vmap":
            scores = grand_scores(heads, x, y)
        else:
            scores = np.zeros(n)
            for params in heads:
                leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
                for i in range(n):
                    loss = torch.nn.functional.cross_entropy(head_logits(leaves, x[i : i + 1]),
                                                             torch.tensor([int(y[i])]))
                    g = torch.autograd.grad(loss, list(leaves.values()))
                    scores[i] += float(torch.sqrt(sum((v.double() ** 2).sum() for v in g)))
            scores /= len(heads)
        out["scores"] = scores.tolist()
    else:
        name, params = PRESETS[args.worker]
        sel = get_selector(name, **params).select(feats, budget, 0)
        out["n_picked"] = int(len(sel.indices))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "data_rss_mb": base, **out}))


def run(method: str, frac: float, n: int, args: argparse.Namespace) -> dict:
    return run_worker(__file__, method, frac, n, embeddings=args.embeddings, labels=args.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", help="(n, d) .npy; default: seeded N(0, 1) float32")
    ap.add_argument("--labels", help="(n,) .npy; default: seeded random 0/1")
    ap.add_argument("--n", type=int, default=N_SST2)
    ap.add_argument("--fracs", type=float, nargs="+", default=[0.05, 0.10, 0.20])
    ap.add_argument("--methods", nargs="+", default=list(PRESETS))
    ap.add_argument("--ref-n", type=int, default=1000, help="rows for the naive GraNd loop")
    ap.add_argument("--json", help="also write all figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--frac", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    src = (f"{args.embeddings} (real embeddings)" if args.embeddings
           else "seeded N(0,1) float32 (NOT real embeddings)")
    print(f"data: {args.n} x {DIM} from {src}; labels: {args.labels or 'seeded random'}; "
          f"cpus={os.cpu_count()}; loadavg={os.getloadavg()[0]:.1f}", flush=True)
    rows: list[dict] = []
    ref: dict[float, float] = {}

    def show(r: dict) -> None:
        rows.append(r)
        print(f"{r['method']:<21} {r['n']:>6} {r['frac']:>5.0%} wall {r['wall_s']:8.2f} s  "
              f"cpu {r['cpu_s']:8.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MiB "
              f"(after load {r['data_rss_mb']:.0f} MiB){r.get('note', '')}", flush=True)

    methods = ["kcenter"] + [m for m in args.methods if m != "kcenter"]
    for method in methods:
        for frac in args.fracs[:1] if method in BUDGET_FREE else args.fracs:
            r = {"method": method, "n": args.n, "frac": frac, **run(method, frac, args.n, args)}
            if method == "kcenter":
                ref[frac] = r["wall_s"]
            else:
                r["note"] = f"  / kcenter {r['wall_s'] / ref[frac]:.2f}"
            show(r)
    fast = run("grand-vmap", args.fracs[0], args.ref_n, args)
    slow = run("grand-naive", args.fracs[0], args.ref_n, args)
    diff = float(np.max(np.abs(np.array(fast.pop("scores")) - np.array(slow.pop("scores")))))
    show({"method": "grand-vmap (2 heads)", "n": args.ref_n, "frac": 0, **fast})
    show({"method": "grand-naive (2 heads)", "n": args.ref_n, "frac": 0, **slow,
          "note": f"  speed-up naive/vmap {slow['wall_s'] / fast['wall_s']:.1f}x, max |diff| {diff:.1e}"})
    if args.json:
        Path(args.json).write_text(json.dumps({"source": src, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
