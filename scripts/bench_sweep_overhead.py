"""The sweep's own overhead, from a finished study's ``timeline.json`` (issue 16, item 4).

A sweep writes ``<study>/timeline.json``: the wall time of each stage
(preflight, Ray start-up, stand-ins, features, select, Tune, report) and
every trial's wall and train + eval seconds. This prints where the wall
time went and the headline: overhead = wall time - (features + select +
trial train + eval seconds / trial slots), as a share of the wall time
(target <= 10 %).

Usage (after ``python -m dataselect.sweep experiments/local.yaml`` on an idle machine)::

    python scripts/bench_sweep_overhead.py runs/local [--json /tmp/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dataselect.sweep.timeline import TIMELINE_FILE, overhead

ROWS = [
    ("stage_preflight", "preflight (data, models, output dir)"),
    ("stage_ray_start", "Ray start-up (`ray.init`)"),
    ("stage_standins", "stand-in LMs (cached: a check)"),
    ("stage_features", "feature stage (work)"),
    ("stage_select", "select stage (work)"),
    ("stage_tune_wait_cpus", "wait for feature actors to free CPUs"),
    ("stage_tune", "Tune run"),
    ("trial_work", "  trial train + eval seconds, summed (work)"),
    ("trial_setup", "  trial set-up inside trials (inputs, imports, files), summed"),
    ("tune_gaps", "  Tune scheduling gaps (Tune wall - trial wall / slots)"),
    ("stage_report", "report"),
    ("unstaged", "other driver work (inputs, study.json, Tuner set-up)"),
]


def table(o: dict[str, float]) -> str:
    total = o["total"]
    lines = ["| part | seconds | % of wall |", "| --- | ---: | ---: |"]
    for key, label in ROWS:
        if key in o:
            lines.append(f"| {label} | {o[key]:.1f} | {100 * o[key] / total:.1f} |")
    lines.append(f"| **wall, start to report** | **{total:.1f}** | 100 |")
    lines.append(f"| **overhead** (wall - features - select - trial work / {int(o['slots'])} slot(s)) "
                 f"| **{o['overhead']:.1f}** | **{100 * o['overhead_frac']:.1f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path, help="study folder (<output_dir>/<name>)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    path = args.study / TIMELINE_FILE
    if not path.is_file():
        print(f"error: {path} not found; it is written at the end of a sweep (this code or later)",
              file=sys.stderr)
        return 2
    data = json.loads(path.read_text())
    o = overhead(data)  # recomputed: the file's own copy may predate a fix to the formula
    print(f"{args.study}: {int(o['trials'])} trials, {int(o['slots'])} trial slot(s)")
    print(table(o))
    print(f"HEADLINE: overhead {o['overhead']:.1f} s = {100 * o['overhead_frac']:.1f} % of "
          f"{o['total']:.1f} s wall (target <= 10 %)")
    if args.json:
        args.json.write_text(json.dumps(o, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
