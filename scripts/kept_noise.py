"""How many likely-mislabelled rows each selector kept, on a pool without injected noise.

Without ``label_noise`` the report cannot count flipped rows. This gives the
usual proxy (Northcutt et al., "Confident Learning", JAIR 2021, the rule
cleanlab applies): a row is *suspect* when a cross-fitted logistic
regression on the pool's embeddings (5 folds, each row scored by the model
that did not see it) gives its given label a probability below 0.5 — on two
classes, it predicts the other one. Per selector × fraction, the mean over
seeds of the suspect share of its kept rows, beside the pool's share.

    python scripts/kept_noise.py runs/families [--csv out.csv]

Reads ``inputs/pool.parquet``, ``inputs/target/pool_embedding.npy`` (a study
with a target) and each trial's ``kept.parquet``; prints a markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dataselect.report.results import collect_results, experiment_dir
from dataselect.selectors.crossfit import crossfit_proba


def suspect_rows(study: Path) -> pd.Series:
    """Pool id -> True where the cross-fitted probe gives the row's label p < 0.5."""
    pool = pd.read_parquet(study / "inputs" / "pool.parquet", columns=["id", "label"])
    emb = np.load(study / "inputs" / "target" / "pool_embedding.npy")
    y = pool["label"].to_numpy(np.int64)
    proba, _ = crossfit_proba(emb, y, n_folds=5, seed=0)
    return pd.Series(proba[np.arange(len(y)), y] < 0.5, index=pool["id"].to_numpy())


def main() -> None:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args()
    suspect = suspect_rows(args.study)
    meta = json.loads((args.study / "study.json").read_text())
    res = collect_results(experiment_dir(args.study, meta))
    res = res[res["status"] == "TERMINATED"]
    rows = []
    for (sel, frac), g in res.groupby(["selector", "fraction"], sort=True):
        shares = []
        for trial in g["trial"]:
            path = args.study / "trials" / trial / "kept.parquet"
            if path.is_file():
                ids = pd.read_parquet(path, columns=["id"])["id"].to_numpy()
                shares.append(float(suspect.reindex(ids).fillna(False).mean()))
        if shares:
            rows.append({"selector": sel, "fraction": frac, "suspect_share": float(np.mean(shares)),
                         "n_seeds": len(shares)})
    table = pd.DataFrame(rows)
    print(f"pool: {suspect.mean():.3f} of {len(suspect):,} rows suspect (cross-fitted probe, p(label) < 0.5)")
    print("| selector | fraction | suspect share of kept rows |\n|---|---|---|")
    for r in table.itertuples():
        print(f"| {r.selector} | {r.fraction:g} | {r.suspect_share:.3f} |")
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
