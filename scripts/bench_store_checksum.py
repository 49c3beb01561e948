"""What the shard checksum costs on a cache hit: sha256 of the bytes against decoding them.

A cache hit reads every shard of a family: the bytes, their sha256 (compared
with the ``.sha256`` sidecar written with the shard), then the parquet decode
and the row check. Times both parts on a real family of a study's store, best
of 5 reads of each shard. Usage::

    python scripts/bench_store_checksum.py runs/target/features [KEY]   # default: the largest family
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq


def main() -> None:
    root = Path(sys.argv[1])
    families = [d for d in root.iterdir() if d.is_dir() and list(d.glob("shard-*.parquet"))]
    fam = root / sys.argv[2] if len(sys.argv) > 2 else max(
        families, key=lambda d: sum(p.stat().st_size for p in d.glob("shard-*.parquet")))
    shards = sorted(fam.glob("shard-*.parquet"))
    print("loadavg at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    size = sum(p.stat().st_size for p in shards)
    read = sha = decode = 0.0
    for p in shards:
        best = [float("inf")] * 3
        for _ in range(5):
            t0 = time.perf_counter()
            data = p.read_bytes()
            t1 = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            t2 = time.perf_counter()
            pq.read_table(io.BytesIO(data))
            t3 = time.perf_counter()
            best = [min(b, x) for b, x in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True)]
        read, sha, decode = read + best[0], sha + best[1], decode + best[2]
    print(f"family {fam.name[:12]}: {len(shards)} shards, {size / 2**20:.1f} MiB")
    print(f"  read bytes   {read * 1e3:8.1f} ms")
    print(f"  sha256       {sha * 1e3:8.1f} ms   ({size / 2**20 / sha:.0f} MiB/s)")
    print(f"  decode       {decode * 1e3:8.1f} ms")
    print(f"  checksum share of a hit (read + sha + decode): {sha / (read + sha + decode):.1%}")
    print("loadavg at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
