"""What the subprocess-per-measurement benchmarks share: launch one worker, read its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys


def run_worker(script: str, method: str, frac: float, n: int, *, embeddings: str | None,
               labels: str | None) -> dict:
    """Run ``script --worker METHOD`` in a fresh process (its own peak RSS, cold caches).

    The worker prints one JSON object as its last stdout line; that is returned.
    """
    cmd = [sys.executable, script, "--worker", method, "--frac", str(frac), "--n", str(n)]
    if embeddings:
        cmd += ["--embeddings", embeddings]
    if labels:
        cmd += ["--labels", labels]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
