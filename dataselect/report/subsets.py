"""What each selector kept: composition, label noise it let through, overlap with the others.

A report that only says "selector X scored 0.79" cannot tell a researcher
*why*. These tables describe the subsets themselves, from each trial's
``kept.parquet`` (the picked pool rows with ``label``, ``n_words``, and
``original_label`` / ``perplexity`` when the study has them):

* composition per selector × fraction, averaged over seeds: class shares,
  mean length in words, mean perplexity;
* under label noise: flipped rows kept (count and share of the subset)
  against the pool's rate, and the precision / recall of *removing* flipped
  rows (removed = pool - subset), the figures a noise filter is judged by;
* Jaccard overlap ``|A ∩ B| / |A ∪ B|`` between every two selectors' subsets
  at each fraction (lowest common seed), so two selectors that pick the same
  rows under different names are flagged;
* with a target, how far each subset moved toward it: mean words beside the
  target's, and a domain classifier's AUC between subset and target
  embeddings (0.5 = indistinguishable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

OVERLAP_FLAG = 0.9
"""Jaccard above which two selectors' subsets are flagged as (nearly) the same."""


def share_column(label_name: str) -> str:
    """``share[<name>]``: the kept.csv column of one class's share, for a label of any spelling.

    Brackets, not a ``share_`` prefix joined to the name: no other column
    holds one, so no label name (``Sci/Tech``, ``n kept``, ``2nd``) can
    collide with another column or another class.
    """
    return f"share[{label_name}]"


def composition(kept: pd.DataFrame, label_names: list[str]) -> dict[str, float]:
    """Shares, lengths and label noise of one subset (a trial's ``kept.parquet``)."""
    n = len(kept)
    labels = kept["label"].to_numpy()
    row: dict[str, float] = {"n_kept": float(n)}
    for k, name in enumerate(label_names):
        row[share_column(name)] = float((labels == k).mean()) if n else float("nan")
    row["mean_words"] = float(kept["n_words"].mean()) if "n_words" in kept and n else float("nan")
    for col in ("perplexity", "pseudo_perplexity"):
        if col in kept:
            row[f"mean_{col}"] = float(kept[col].mean()) if n else float("nan")
    if "original_label" in kept:
        flipped = int((kept["original_label"].to_numpy() != labels).sum())
        row["flipped_kept"] = float(flipped)
        row["flipped_share"] = flipped / n if n else float("nan")
    return row


def removal_scores(n_pool: int, n_flipped_pool: int, n_kept: float, flipped_kept: float) -> dict[str, float]:
    """Precision / recall of the removed rows (pool - subset) as a detector of flipped labels."""
    removed = n_pool - n_kept
    caught = n_flipped_pool - flipped_kept
    return {"removal_precision": caught / removed if removed > 0 else float("nan"),
            "removal_recall": caught / n_flipped_pool if n_flipped_pool > 0 else float("nan")}


@dataclass(frozen=True)
class TargetSpace:
    """What a subset's distance to the target is measured in (``inputs/target/`` of a study)."""

    pool_ids: np.ndarray
    """(n,) pool row ids, the rows of ``pool_embedding``."""
    pool_embedding: np.ndarray
    target_embedding: np.ndarray
    target_words: np.ndarray
    """(m,) words per target row."""
    eval_embedding: np.ndarray | None = None
    """The eval set's embeddings: a second measure, against rows no selector saw
    (unless the target is the eval split itself)."""

    def projected(self, dims: int = 64, seed: int = 0) -> TargetSpace:
        """The same space on its first ``dims`` principal components (fitted once on
        target, eval set and every 10th pool row).

        Why: :func:`domain_auc` fits three logistic regressions per subset and two
        subsets per trial; on 384-dim MiniLM embeddings that cost ~2 s a trial
        (227 s of a 239 s report on the 81-trial target study). On 64
        components a fit is ~50x cheaper and the ranking of subsets is kept
        (random 0.77-0.79 < dsir 0.88, density_ratio 0.53 on that study);
        absolute AUCs are a little lower, as fewer directions separate less.
        """
        from sklearn.decomposition import PCA

        parts = [self.target_embedding, self.pool_embedding[::10]]
        if self.eval_embedding is not None:
            parts.append(self.eval_embedding)
        fit = np.concatenate([np.asarray(p, np.float64) for p in parts])
        if fit.shape[1] <= dims or len(fit) <= dims:
            return self
        pca = PCA(dims, random_state=seed).fit(fit)
        return TargetSpace(self.pool_ids, pca.transform(self.pool_embedding), pca.transform(self.target_embedding),
                           self.target_words,
                           None if self.eval_embedding is None else pca.transform(self.eval_embedding))

    def auc(self, ids: np.ndarray, seed: int = 0) -> tuple[float, float]:
        """:func:`domain_auc` of the pool rows ``ids`` against the target, and against the eval set."""
        pos = pd.Index(self.pool_ids).get_indexer(np.asarray(ids, np.int64))
        sub = self.pool_embedding[pos[pos >= 0]]
        vs_eval = (float("nan") if self.eval_embedding is None
                   else domain_auc(sub, self.eval_embedding, seed=seed))
        return domain_auc(sub, self.target_embedding, seed=seed), vs_eval


def load_target_space(study: Path) -> TargetSpace | None:
    """A study's :class:`TargetSpace` (``inputs/target/``), projected; None when it has none."""
    d = study / "inputs" / "target"
    try:
        rows = pd.read_parquet(d / "target.parquet")
        pool = pd.read_parquet(study / "inputs" / "pool.parquet", columns=["id"])
        evals = np.load(d / "eval_embedding.npy") if (d / "eval_embedding.npy").is_file() else None
        return TargetSpace(pool["id"].to_numpy(np.int64), np.load(d / "pool_embedding.npy"),
                           np.load(d / "target_embedding.npy"), rows["n_words"].to_numpy(), evals).projected()
    except (OSError, ValueError, KeyError):
        return None


def domain_auc(subset: np.ndarray, target: np.ndarray, *, seed: int = 0, folds: int = 3) -> float:
    """Cross-validated ROC AUC of a classifier telling ``subset`` rows from ``target`` rows.

    A logistic regression on the standardised embeddings, each row scored by
    the fold model that did not see it (``StratifiedKFold``, seeded). 0.5:
    the two are indistinguishable in this space; 1.0: fully apart. Rows in
    both sets are told apart by nothing, so a subset that copies the target
    scores 0.5.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([np.asarray(subset, np.float64), np.asarray(target, np.float64)])
    y = np.concatenate([np.zeros(len(subset), np.int64), np.ones(len(target), np.int64)])
    k = min(folds, len(subset), len(target))
    if k < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=300))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


class SubsetDistance(Protocol):
    """How far a subset is from the target and the eval set: a :class:`TargetSpace`, or the
    AUCs a study archive stored (``report.archive.ArchivedDistances``)."""

    def auc(self, ids: np.ndarray, seed: int = 0) -> tuple[float, float]: ...


def composition_table(results: pd.DataFrame, kept: Mapping[str, pd.DataFrame], label_names: list[str],
                      *, n_pool: int | None = None, n_flipped_pool: int | None = None,
                      target: SubsetDistance | None = None) -> pd.DataFrame:
    """One row per selector × fraction: :func:`composition` averaged over the seeds that finished.

    With ``target``, also ``target_auc`` and ``eval_auc``: :meth:`TargetSpace.auc`
    of each seed's subset, averaged (0.5 = as close as it can get).
    """
    rows = []
    for (sel, frac), g in results.groupby(["selector", "fraction"], sort=True):
        parts = [composition(kept[t], label_names) for t in g["trial"] if t in kept]
        if not parts:
            continue
        if target is not None:
            for part, t in zip(parts, [t for t in g["trial"] if t in kept], strict=True):
                part["target_auc"], part["eval_auc"] = target.auc(kept[t]["id"].to_numpy())
        mean = pd.DataFrame(parts).mean(numeric_only=True).to_dict()
        row = {"selector": sel, "fraction": frac, "n_seeds": len(parts), **mean}
        if n_pool is not None and n_flipped_pool is not None and "flipped_kept" in mean:
            row.update(removal_scores(n_pool, n_flipped_pool, mean["n_kept"], mean["flipped_kept"]))
        rows.append(row)
    return pd.DataFrame(rows)


def jaccard_matrix(subsets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise Jaccard overlap of id sets, by one matrix product over membership vectors."""
    names = list(subsets)
    if not names:
        return pd.DataFrame()
    universe = np.unique(np.concatenate([np.asarray(v, np.int64) for v in subsets.values()]))
    member = np.zeros((len(names), len(universe)), dtype=np.float32)
    for i, name in enumerate(names):
        member[i, np.searchsorted(universe, np.unique(np.asarray(subsets[name], np.int64)))] = 1.0
    inter = member @ member.T
    size = member.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, inter / union, 1.0)
    return pd.DataFrame(jac, index=names, columns=names)


def overlap_flags(jac: pd.DataFrame, threshold: float = OVERLAP_FLAG) -> list[tuple[str, str, float]]:
    """Pairs ``(a, b, jaccard)`` with a < b whose overlap exceeds ``threshold`` (or is identical)."""
    out = []
    names = list(jac.index)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            j = float(jac.loc[a, b])
            if j > threshold or j == 1.0:
                out.append((a, b, j))
    return sorted(out, key=lambda t: (-t[2], t[0], t[1]))


def subsets_at(results: pd.DataFrame, kept: Mapping[str, pd.DataFrame], fraction: float
               ) -> tuple[dict[str, np.ndarray], int | None]:
    """Each selector's subset ids at ``fraction`` for the lowest seed every selector finished.

    Falls back to each selector's lowest seed when no seed is common to all.
    """
    at = results[(results["fraction"] == fraction) & results["trial"].isin(list(kept))]
    if at.empty:
        return {}, None
    seeds = [set(g["seed"]) for _, g in at.groupby("selector")]
    common = sorted(set.intersection(*seeds))
    out: dict[str, np.ndarray] = {}
    for sel, g in at.groupby("selector", sort=True):
        pick = g[g["seed"] == common[0]] if common else g.sort_values("seed")
        out[sel] = kept[pick["trial"].iloc[0]]["id"].to_numpy(np.int64)
    return out, (common[0] if common else None)
