"""Prefix reuse in the select stage: a greedy selector at 5/10/20 % vs its 20 % run alone.

Issue 16, item 3: herding's (k-center's, a ranked filter's) picks at a smaller
budget are the first picks at a larger one, so the select stage runs the
largest budget once per seed and slices the rest. Headline: wall time of
``run_select_stage`` for all fractions (``ray.init`` excluded, reported
apart; ``ray.put``, the task and every manifest write included) divided by
the peer, ``Selector.select`` at the largest fraction alone in a plain
process with the same thread count as a 1-CPU select task (BLAS on one
thread). Target: <= 1.1x. For scale, the work the stage did before (one
run per fraction) is the sum of the alone runs at each fraction
(``--separate``).

Every measurement is its own subprocess (fresh interpreter, cold caches).
The manifests the stage wrote are checked against the alone run: the
largest one holds its picks, the smaller ones its prefixes.

Usage::

    python scripts/bench_prefix.py --embeddings sst2_train_minilm.npy --json /tmp/prefix.json
    python scripts/bench_prefix.py            # seeded N(0, 1) 67,349 x 384 float32
    python scripts/bench_prefix.py --n 2000   # a smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_SST2, DIM = 67_349, 384
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def load(path: str | None, n: int) -> np.ndarray:
    if path:
        return np.ascontiguousarray(np.load(path, mmap_mode="r")[:n], dtype=np.float32)
    return np.random.default_rng(0).normal(size=(n, DIM)).astype(np.float32)


def worker_alone(args: argparse.Namespace) -> dict:
    from dataselect.selectors import get_selector

    x = load(args.embeddings, args.n)
    budget = max(1, round(args.frac * len(x)))
    selector = get_selector(args.selector, **json.loads(args.params))
    t0, c0 = time.perf_counter(), time.process_time()
    sel = selector.select({"embedding": x}, budget, args.seed)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "budget": budget, "picks": sel.indices.tolist() if args.keep_picks else None}


def worker_stage(args: argparse.Namespace) -> dict:
    import ray

    from dataselect.core.manifest import read_manifest
    from dataselect.sweep.ray_runtime import init_ray
    from dataselect.sweep.select_stage import SECONDS_KEY, run_select_stage
    from dataselect.sweep.study import parse_study

    x = load(args.embeddings, args.n)
    out = Path(args.out)
    cfg = parse_study({
        "name": "bench-prefix", "output_dir": str(out),
        "selectors": [{"name": args.selector, "params": json.loads(args.params)}],
        "grid": {"fractions": args.fracs, "seeds": [args.seed], "full_reference": False},
        "ray": {"num_cpus": args.ray_cpus, "temp_dir": args.ray_tmp},
    }, check_paths=False)
    t0 = time.perf_counter()
    init_ray(cfg.ray)
    t_init = time.perf_counter() - t0
    feats = {"id": np.arange(len(x), dtype=np.int64), "embedding": x}
    t0 = time.perf_counter()
    res = run_select_stage(cfg, feats, features_fingerprint="bench", manifest_dir=out / "manifests")
    wall = time.perf_counter() - t0
    ray.shutdown()
    cells = []
    for (_, frac, _), r in sorted(res.items(), key=lambda kv: kv[0][1]):
        if r.error:
            raise SystemExit(f"stage cell {frac} failed: {r.error}")
        m = read_manifest(r.path)
        cells.append({"fraction": frac, "budget": r.budget, "sliced_from": r.sliced_from,
                      "task_seconds": m.meta["info"][SECONDS_KEY], "ids": m.ids.tolist()})
    return {"wall_s": wall, "ray_init_s": t_init, "cells": cells}


def run(mode: str, args: argparse.Namespace, **extra: object) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--n", str(args.n), "--selector", args.selector,
           "--params", args.params, "--seed", str(args.seed), "--ray-cpus", str(args.ray_cpus),
           "--fracs", *map(str, args.fracs)]
    if args.embeddings:
        cmd += ["--embeddings", args.embeddings]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    env = {**os.environ, **ONE_THREAD} if mode == "alone" else dict(os.environ)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{mode} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", help="(n, d) .npy; default: seeded N(0, 1) float32")
    ap.add_argument("--n", type=int, default=N_SST2)
    ap.add_argument("--fracs", type=float, nargs="+", default=[0.05, 0.10, 0.20])
    ap.add_argument("--selector", default="herding")
    ap.add_argument("--params", default="{}", help="selector params as JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--separate", action="store_true",
                    help="also time the alone run at every smaller fraction (the pre-reuse cost)")
    ap.add_argument("--json", help="also write all figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--frac", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--ray-tmp", help=argparse.SUPPRESS)
    ap.add_argument("--keep-picks", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = worker_alone if args.worker == "alone" else worker_stage
        print(json.dumps(fn(args)))
        return

    src = args.embeddings or "seeded N(0,1) float32 (NOT real embeddings)"
    load1 = os.getloadavg()
    print(f"data: {args.n} x {DIM} from {src}; {args.selector} {args.params}; fractions {args.fracs}; "
          f"cpus={os.cpu_count()}; loadavg before {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}",
          flush=True)
    top = max(args.fracs)
    alone = run("alone", args, frac=top, keep_picks=True)
    print(f"peer: {args.selector} at {top:.0%} alone (1 BLAS thread): wall {alone['wall_s']:.2f} s, "
          f"cpu {alone['cpu_s']:.2f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="dsp-", dir="/tmp") as tmp:
        stage = run("stage", args, out=tmp, ray_tmp=os.path.join(tmp, "r"))
    ratio = stage["wall_s"] / alone["wall_s"]
    picks = alone.pop("picks")
    for cell in stage["cells"]:
        ids = cell.pop("ids")
        if ids != picks[: cell["budget"]]:
            raise SystemExit(f"stage manifest at {cell['fraction']} is not the alone run's prefix")
    runs = sum(1 for c in stage["cells"] if c["sliced_from"] is None)
    print(f"select stage, {len(stage['cells'])} fractions: wall {stage['wall_s']:.2f} s "
          f"({runs} selector run(s), task {max(c['task_seconds'] for c in stage['cells']):.2f} s; "
          f"ray.init {stage['ray_init_s']:.2f} s excluded); manifests = alone picks and prefixes: yes")
    print(f"HEADLINE: stage at {'/'.join(f'{f:.0%}' for f in sorted(args.fracs))} / {top:.0%} alone = "
          f"{ratio:.3f}x (target <= 1.1x)")
    separate = []
    if args.separate:
        for frac in sorted(args.fracs):
            r = alone if frac == top else run("alone", args, frac=frac)
            separate.append({"fraction": frac, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"]})
        total = sum(r["wall_s"] for r in separate)
        print(f"without reuse (one run per fraction, summed): {total:.2f} s = "
              f"{total / alone['wall_s']:.2f}x the {top:.0%} run")
    load2 = os.getloadavg()
    print(f"loadavg after {load2[0]:.2f} {load2[1]:.2f} {load2[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "source": src, "n": args.n, "selector": args.selector, "params": json.loads(args.params),
            "fractions": args.fracs, "alone": alone, "stage": stage, "ratio": ratio,
            "separate": separate, "loadavg_before": load1, "loadavg_after": load2}, indent=1))


if __name__ == "__main__":
    main()
