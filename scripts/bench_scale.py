"""Selection past one task's memory (issue 17): one task vs ``partitions`` on a large pool.

Writes a synthetic clustered pool (``--rows`` x ``--dim`` float32, 256
Gaussian blobs, labels by blob with 10 % flipped) as feature-store parquet
shards, then for each method runs, on the same Ray cluster and data:

* **one task**: a fresh Ray worker reads the whole embedding column from the
  shards (``read_columns``) and runs the exact selector;
* **partitioned**: the select stage's path (``prepare_partitions`` +
  ``run_partitioned``): k-means on a sample, Ray Data assignment over the
  shards, one fresh worker per partition.

Figures: wall time, peak RSS of every selection task (``ru_maxrss`` of a
``max_calls=1`` worker, so it is that task's alone; the worker's RSS before it
read anything is printed too), and quality over all rows, streamed shard by
shard in a separate task: k-center's covering radius, herding's mean gap;
ratio partitioned / one task. ``--two-node`` repeats it on a loopback
two-node Ray cluster (one CPU each; tests/cluster/two_node_ray.py) and
prints the node of every partition task.

Usage::

    python scripts/bench_scale.py                       # 2,000,000 x 384, kcenter + herding, P = 4
    python scripts/bench_scale.py --rows 20000 --two-node --json /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEED = 0


# --------------------------------------------------------------------------- data
def write_pool(root: Path, rows: int, dim: int, shard_size: int):
    """Synthetic pool as a one-family feature-store table, written shard by shard."""
    from dataselect.features.table_ref import save_embedding_table

    rng = np.random.default_rng(SEED)
    centres = (3 * rng.normal(size=(256, dim))).astype(np.float32)
    blob = rng.integers(0, 256, rows)
    labels = ((blob % 2) ^ (rng.random(rows) < 0.1)).astype(np.int64)

    def shard(lo: int, hi: int) -> np.ndarray:  # ids are 0..n-1, so id-sorted rows = frame rows
        noise = np.random.default_rng([SEED, lo]).normal(size=(hi - lo, dim)).astype(np.float32)
        return centres[blob[lo:hi]] + noise

    return save_embedding_table(root, np.arange(rows), labels, shard, shard_size=shard_size, name="bench_scale")


# --------------------------------------------------------------------------- tasks
def one_task(ref, method: str, budget: int, seed: int) -> dict:
    """The exact selector on the whole pool in one (fresh) worker."""
    import ray

    from dataselect.features.table_ref import read_columns
    from dataselect.selectors import get_selector
    from dataselect.sweep.partition_stage import _peak_rss_mib, _rss_mib

    rss0 = _rss_mib()
    t0 = time.perf_counter()
    x = read_columns(ref, ["embedding"])
    t1 = time.perf_counter()
    sel = get_selector(method).select(x, budget, seed)
    t2 = time.perf_counter()
    return {"picks": sel.indices, "read_s": t1 - t0, "select_s": t2 - t1, "rss_start_mib": rss0,
            "peak_rss_mib": _peak_rss_mib(), "node": ray.get_runtime_context().get_node_id()}


def quality(ref, picks: np.ndarray) -> dict:
    """Covering radius and mean gap of ``picks`` over all rows, one shard at a time."""
    import faiss
    import pyarrow.parquet as pq

    from dataselect.features.store import from_arrow
    from dataselect.features.table_ref import column_shards, read_columns

    centres = np.ascontiguousarray(read_columns(ref, ["embedding"], rows=np.sort(picks))["embedding"])
    index = faiss.IndexFlatL2(centres.shape[1])
    index.add(centres)
    worst, total, n = 0.0, np.zeros(centres.shape[1]), 0
    for path in column_shards(ref, "embedding").paths:
        x = np.ascontiguousarray(from_arrow(pq.read_table(path, columns=["embedding"]), ["embedding"])["embedding"])
        d2, _ = index.search(x, 1)
        worst = max(worst, float(d2.max()))
        total += x.sum(axis=0, dtype=np.float64)
        n += len(x)
    gap = np.linalg.norm(centres.mean(axis=0, dtype=np.float64) - total / n)
    return {"radius": float(np.sqrt(max(worst, 0.0))), "mean_gap": float(gap)}


# --------------------------------------------------------------------------- driver
def measure(ref, method: str, budget: int, n_parts: int, work: Path) -> list[dict]:
    import ray

    from dataselect.selectors import get_selector
    from dataselect.sweep.partition_stage import prepare_partitions, run_partitioned

    fresh = {"num_cpus": 1, "max_calls": 1}
    qual = ray.remote(**fresh)(quality)
    t0 = time.perf_counter()
    one = ray.get(ray.remote(**fresh)(one_task).remote(ref, method, budget, SEED))
    one_wall = time.perf_counter() - t0
    q_one = ray.get(qual.remote(ref, one["picks"]))
    selector = get_selector(method, partitions=n_parts)
    t0 = time.perf_counter()
    prepared = prepare_partitions(ref, selector, 0 if not selector.seeded else SEED, work)
    t1 = time.perf_counter()
    # A runtime env of their own gives the partition tasks fresh workers: an
    # idle worker left by the Ray Data assignment would carry its heap (and its
    # ru_maxrss) into the task's figures.
    sel = run_partitioned(prepared, selector, budget, task_options={
        "max_calls": 1, "runtime_env": {"env_vars": {"DATASELECT_BENCH_FRESH_WORKER": "1"}}})
    part_wall = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    q_part = ray.get(qual.remote(ref, sel.indices))
    tasks = sel.info["tasks"]
    rows = [
        {"method": method, "mode": "one task", "budget": budget, "wall_s": one_wall, "tasks": 1,
         "peak_rss_mib": one["peak_rss_mib"], "rss_start_mib": one["rss_start_mib"],
         "read_s": one["read_s"], "select_s": one["select_s"], "nodes": [one["node"]], **q_one},
        {"method": method, "mode": f"partitioned P={n_parts}", "budget": budget, "wall_s": part_wall,
         "tasks": len(tasks), "peak_rss_mib": max(t["peak_rss_mib"] for t in tasks),
         "rss_start_mib": max(t["rss_start_mib"] for t in tasks), "prepare_s": t1 - t0,
         "fit_s": prepared.seconds["fit"], "assign_s": prepared.seconds["assign"],
         "select_s": part_wall - (t1 - t0), "nodes": sorted({t["node"] for t in tasks}),
         "partition_tasks": [{k: t[k] for k in ("partition", "node", "rows", "picks", "seconds",
                                                "peak_rss_mib")} for t in tasks], **q_part},
    ]
    return rows


def show(r: dict, ref_row: dict | None) -> None:
    ratio = ""
    if ref_row is not None:
        key = "radius" if r["method"] == "kcenter" else "mean_gap"
        ratio = (f"  {key} ratio {r[key] / ref_row[key]:.3f}, wall ratio {r['wall_s'] / ref_row['wall_s']:.2f}, "
                 f"peak RSS ratio {r['peak_rss_mib'] / ref_row['peak_rss_mib']:.2f}")
    print(f"{r['method']:<8} {r['mode']:<16} budget {r['budget']:>6}  wall {r['wall_s']:8.1f} s  "
          f"tasks {r['tasks']:>3}  peak RSS/task {r['peak_rss_mib']:7.0f} MiB (at start {r['rss_start_mib']:.0f})  "
          f"radius {r['radius']:.3f}  gap {r['mean_gap']:.4f}  nodes {len(r['nodes'])}{ratio}", flush=True)
    for t in r.get("partition_tasks", []):
        print(f"    partition {t['partition']:>3}: node {t['node'][:12]}  rows {t['rows']:>9}  "
              f"picks {t['picks']:>6}  {t['seconds']:7.1f} s  peak RSS {t['peak_rss_mib']:.0f} MiB", flush=True)


def run(args: argparse.Namespace) -> dict:
    """Everything after Ray is up (local, or the cluster at ``args.address``)."""
    import ray

    from dataselect.features.table_ref import TableRef
    from dataselect.selectors.partitioning import auto_partitions

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    ref = TableRef(Path(args.store_root), args.table_key)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    print(f"ray: {len(nodes)} node(s), {int(ray.cluster_resources().get('CPU', 0))} CPUs; "
          f"auto would pick P={auto_partitions(args.rows, args.dim, 4 * 2**30)} at 4 GiB per task", flush=True)
    out = []
    for method in args.methods:
        budget = args.budget if method == "kcenter" else args.herding_budget
        rows = measure(ref, method, budget, args.partitions, Path(args.work) / "partitions")
        show(rows[0], None)
        show(rows[1], rows[0])
        out += rows
    ray.shutdown()
    return {"rows": out, "nodes": [n["NodeID"] for n in nodes]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--budget", type=int, default=2000, help="k-center budget (rows)")
    ap.add_argument("--herding-budget", type=int, default=500)
    ap.add_argument("--methods", nargs="+", default=["kcenter", "herding"])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=2, help="local Ray CPUs (ignored with --two-node)")
    ap.add_argument("--shard-size", type=int, default=8192)
    ap.add_argument("--two-node", action="store_true", help="also run on a loopback two-node cluster")
    ap.add_argument("--work", default=None, help="folder for the pool (default: a new /tmp folder, removed)")
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--store-root", help=argparse.SUPPRESS)
    ap.add_argument("--table-key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.address:  # the driver half of --two-node, run under the cluster's environment
        print(json.dumps(run(args)))
        return

    load0 = os.getloadavg()
    print(f"{args.rows} x {args.dim} float32, 256 blobs; cpus={os.cpu_count()}; "
          "loadavg at the start: {:.2f} {:.2f} {:.2f}".format(*load0), flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_scale-"))
    try:
        t0 = time.perf_counter()
        ref = write_pool(work / "features", args.rows, args.dim, args.shard_size)
        print(f"pool written in {time.perf_counter() - t0:.0f} s: {ref.root}/{ref.key[:12]}…", flush=True)
        args.store_root, args.table_key, args.work = str(ref.root), ref.key, str(work)
        print("== one machine, local Ray", flush=True)
        result = {"local": run(args)}
        if args.two_node:
            sys.path.insert(0, str(REPO / "tests" / "cluster"))
            from two_node_ray import two_node_cluster

            print("== loopback two-node cluster (1 CPU per node)", flush=True)
            with two_node_cluster(dashboard=False) as cluster:
                cmd = [sys.executable, __file__, "--address", cluster.address, "--store-root", args.store_root,
                       "--table-key", args.table_key, "--work", args.work, "--rows", str(args.rows),
                       "--dim", str(args.dim), "--budget", str(args.budget), "--herding-budget",
                       str(args.herding_budget), "--partitions", str(args.partitions), "--methods", *args.methods]
                env = {**cluster.env, "PYTHONPATH": os.pathsep.join(
                    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
                if proc.returncode != 0:
                    raise RuntimeError(f"two-node driver failed:\n{proc.stderr[-4000:]}")
                lines = proc.stdout.strip().splitlines()
                print("\n".join(lines[:-1]), flush=True)
                result["two_node"] = json.loads(lines[-1])
                both = {n for r in result["two_node"]["rows"] if "partitioned" in r["mode"] for n in r["nodes"]}
                print(f"partition tasks ran on {len(both)} of {len(result['two_node']['nodes'])} nodes", flush=True)
    finally:
        if args.work is None or Path(args.work).name.startswith("bench_scale-"):
            shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    print("loadavg at the end: {:.2f} {:.2f} {:.2f}".format(*load1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "rows": args.rows, "dim": args.dim,
                                               "loadavg_start": load0, "loadavg_end": load1}, indent=1))


if __name__ == "__main__":
    main()
