"""Target-aware selectors on all of SST-2 (67,349 rows), each against its peer, in one run.

* ``dsir`` against the authors' package (PyPI ``data-selection`` 1.0.3,
  ``HashedNgramDSIR``, files in / files out): seconds end to end, and
  agreement (correlation of the log importance weights, overlap of the
  deterministic top-k picks, overlap of resampled picks at equal seeds next
  to the package's own overlap between two seeds).
* ``metric_match`` against numpy's weighted draw without replacement
  (``Generator.choice(p=..., replace=False)``) on the same bin weights.
* ``density_ratio`` (given embeddings) against the plain scikit-learn
  version a user would write: ``cross_val_predict(LogisticRegression())``
  on the stacked embeddings.
* ``gradient_match`` against the plain numpy version: the (n, (d + 1) k)
  per-example gradient matrix, then the projection.

Target: the 872 validation sentences (a benchmark, not a study: the
transductive setting is irrelevant to speed and agreement). Embeddings:
MiniLM (``minilm``), computed once into ``--cache`` (about 4 minutes).

    python scripts/bench_target.py [--cache runs/bench-target] [--fraction 0.01]

Prints ``uptime`` before and after, and one table row per comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _jaccard(a, b) -> float:
    a, b = set(map(int, a)), set(map(int, b))
    return len(a & b) / len(a | b)


def bench_dsir(pool_texts, target_texts, budget: int, seed: int) -> list[dict]:
    """Ours (features + weights + resampling) vs the package end to end."""
    from data_selection import HashedNgramDSIR

    from dataselect.features.ngrams import hashed_ngrams, ragged
    from dataselect.selectors import get_selector
    from dataselect.selectors.dsir import PAPER, bag_log_ratio, row_sums

    def ours():
        pool = ragged(hashed_ngrams(pool_texts))
        target = ragged(hashed_ngrams(target_texts))
        feats = {"ngram_buckets": pool, "target:ngram_buckets": target}
        sel = get_selector("dsir", **PAPER).select(feats, budget, seed)  # the authors' recipe
        return feats, sel

    (feats, sel), t_ours = _timed(ours)
    logw, _ = row_sums(feats["ngram_buckets"], bag_log_ratio(feats["ngram_buckets"],
                                                             feats["target:ngram_buckets"]))
    top_ours = get_selector("dsir", **{**PAPER, "top_k": True}).select(feats, budget, seed).indices
    with tempfile.TemporaryDirectory(prefix="dsir-") as d:
        d = Path(d)
        for name, texts in (("pool", pool_texts), ("target", target_texts)):
            with open(d / f"{name}.jsonl", "w") as fh:
                for i, t in enumerate(texts):
                    fh.write(json.dumps({"text": t, "id": i}) + "\n")

        def theirs(top_k: bool, seed_: int):
            dsir = HashedNgramDSIR([str(d / "pool.jsonl")], [str(d / "target.jsonl")],
                                   cache_dir=str(d / f"cache-{top_k}-{seed_}"), num_proc=2,
                                   min_example_length=0, ngrams=2, num_buckets=10000, tokenizer="wordpunct")
            dsir.fit_importance_estimator(num_tokens_to_fit="all")
            dsir.compute_importance_weights()
            np.random.seed(seed_)  # the package draws its Gumbel noise from numpy's global state
            out = d / f"out-{top_k}-{seed_}"
            dsir.resample(out_dir=str(out), num_to_sample=budget, cache_dir=str(d / f"tmp-{top_k}-{seed_}"),
                          top_k=top_k)
            picks = [json.loads(line)["id"] for f in sorted(out.glob("*.jsonl"))
                     for line in f.read_text().splitlines() if line]
            # Virtual shards: shard j holds rows j, j + num_proc, ...; stitch the weights back.
            parts = [np.load(p) for p in sorted((d / f"cache-{top_k}-{seed_}" / "log_importance_weights").glob("*.npy"),
                                               key=lambda p: int(p.stem))]
            w = np.empty(sum(len(p) for p in parts))
            for j, p in enumerate(parts):
                w[j::len(parts)] = p
            return np.asarray(picks), w

        (picks_pkg, w_pkg), t_pkg = _timed(lambda: theirs(False, seed))
        top_pkg, _ = theirs(True, seed)
        other_pkg, _ = theirs(False, seed + 1)
    return [{"what": "dsir, 67k pool, 1 %: ours (n-grams + weights + resample) vs data-selection 1.0.3",
             "ours_s": t_ours, "peer_s": t_pkg, "ratio": t_pkg / t_ours,
             "corr_log_weights": float(np.corrcoef(logw, w_pkg)[0, 1]),
             "max_abs_diff_log_weights": float(np.abs(logw - w_pkg).max()),
             "topk_jaccard": _jaccard(top_ours, top_pkg),
             "resample_jaccard_ours_vs_pkg_same_seed": _jaccard(sel.indices, picks_pkg),
             "resample_jaccard_pkg_seed_vs_seed+1": _jaccard(picks_pkg, other_pkg)}]


def bench_metric_match(words, target_words, budget: int, seed: int) -> list[dict]:
    from dataselect.selectors import get_selector
    from dataselect.selectors.metric_match import joint_bins

    feats = {"token_count": words, "target:token_count": target_words}
    sel, t_ours = _timed(lambda: get_selector("metric_match").select(feats, budget, seed))

    def plain():
        ids_p, ids_t, size = joint_bins([words.astype(float)], [target_words.astype(float)], 10)
        cp = np.bincount(ids_p, minlength=size) + 0.5
        ct = np.bincount(ids_t, minlength=size) + 0.5
        w = (ct / ct.sum()) / (cp / cp.sum())
        p = w[ids_p] / w[ids_p].sum()
        return np.random.default_rng(seed).choice(len(words), size=budget, replace=False, p=p)

    picks, t_plain = _timed(plain)
    return [{"what": "metric_match (words, 10 bins), 67k pool, 1 %: Gumbel top-k vs numpy choice(p, replace=False)",
             "ours_s": t_ours, "peer_s": t_plain, "ratio": t_plain / t_ours,
             "mean_words_ours": float(words[sel.indices].mean()), "mean_words_peer": float(words[picks].mean()),
             "mean_words_target": float(target_words.mean()), "tv_subset_ours": sel.info["tv_subset"]}]


def bench_density_ratio(emb, target_emb, budget: int, seed: int) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dataselect.selectors import get_selector

    feats = {"embedding_norm": emb, "target:embedding_norm": target_emb}
    sel, t_ours = _timed(lambda: get_selector("density_ratio").select(feats, budget, seed))

    fold_seed = int(np.random.default_rng(seed).integers(0, 2**31 - 1))  # as the selector derives it

    def plain():
        x = np.concatenate([emb, target_emb])
        y = np.r_[np.zeros(len(emb)), np.ones(len(target_emb))]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=100))
        p = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=fold_seed),
                              method="predict_proba")[: len(emb), 1]
        return np.argsort(-p)[:budget]

    return _with_peer("density_ratio (classifier, 5 folds) given 67k x 384 embeddings, 1 %: ours vs "
                      "sklearn cross_val_predict", sel, t_ours, plain, target_auc=sel.info["target_auc"])


def _with_peer(what: str, sel, t_ours: float, plain, **extra) -> list[dict]:
    """The peer timed twice: on one BLAS thread, as the selector runs in its 1-CPU Ray
    task (and for bit-identical results), and on the default threads a user would get."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        picks, t_one = _timed(plain)
    _, t_all = _timed(plain)
    return [{"what": what, "ours_s": t_ours, "peer_1_thread_s": t_one, "peer_default_threads_s": t_all,
             "ratio_1_thread": t_one / t_ours, "ratio_default_threads": t_all / t_ours,
             "topk_jaccard": _jaccard(sel.indices, picks), **extra}]


def bench_gradient_match(emb, labels, target_emb, budget: int, seed: int) -> list[dict]:
    from dataselect.selectors import get_selector
    from dataselect.selectors.gradient_match import GradientMatch

    feats = {"embedding_norm": emb, "label": labels, "target:embedding_norm": target_emb,
             "target:label": np.full(len(target_emb), -1)}
    s = get_selector("gradient_match")
    sel, t_ours = _timed(lambda: s.select(feats, budget, seed))

    def plain():
        # The same warm-up and checkpoints, gradients materialised row by row block.
        rng = np.random.default_rng(seed)
        g = GradientMatch()
        x = emb.astype(np.float64)
        classes, y = np.unique(labels, return_inverse=True)
        k, n = len(classes), len(x)
        size = min(n, max(int(round(g.warmup_fraction * n)), 16 * k))
        warm = np.sort(rng.choice(n, size=size, replace=False))
        mu, sd = x[warm].mean(0), x[warm].std(0) + 1e-12
        xs = (x - mu) / sd
        xts = (target_emb - mu) / sd
        from dataselect.selectors.gradient_match import softmax_head_steps
        every = g.steps // g.checkpoints
        heads = softmax_head_steps(xs[warm], y[warm], k, g.steps, g.lr, {every * (c + 1) for c in range(g.checkpoints)})
        proj = rng.standard_normal(((x.shape[1] + 1) * k, g.dim)) / np.sqrt(g.dim)

        def grads(a, lab, w):
            ab = np.hstack([a, np.ones((len(a), 1))])
            z = ab @ w
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(a)), lab] -= 1
            full = (p[:, :, None] * ab[:, None, :]).reshape(len(a), -1)  # (n, k (d + 1))
            h = full @ proj
            return h / np.linalg.norm(h, axis=1, keepdims=True)

        total = np.zeros(n)
        last = heads[max(heads)]
        ty = np.argmax(np.hstack([xts, np.ones((len(xts), 1))]) @ last, axis=1)
        for st in sorted(heads):
            t = grads(xts, ty, heads[st]).mean(0)
            total += grads(xs, y, heads[st]) @ (t / np.linalg.norm(t))
        return np.argsort(-total)[:budget]

    return _with_peer("gradient_match (5 % warm-up, 4 checkpoints, dim 256), 67k pool, 1 %: ours vs "
                      "materialised per-example gradients", sel, t_ours, plain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default="runs/bench-target")
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=["dsir", "metric_match", "density_ratio", "gradient_match"])
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from dataselect.core.config import DatasetConfig, FeaturesConfig
    from dataselect.core.data import load_dataset
    from dataselect.features import compute_features

    ds = load_dataset(DatasetConfig())
    pool, target = ds.train, ds.eval
    budget = round(args.fraction * len(pool))
    print("before:", _uptime(), flush=True)
    rows = []
    if "dsir" in args.only:
        rows += bench_dsir(pool["text"].tolist(), target["text"].tolist(), budget, args.seed)
    if "metric_match" in args.only:
        rows += bench_metric_match(pool["text"].str.split().str.len().to_numpy(),
                                   target["text"].str.split().str.len().to_numpy(), budget, args.seed)
    if {"density_ratio", "gradient_match"} & set(args.only):
        cfg = FeaturesConfig(encoder="minilm", max_length=64, batch_size=64, perplexity_model=None,
                             text_metrics=False)
        store = Path(args.cache) / "features"
        emb = np.asarray(compute_features(pool, cfg, store, which={"embedding"}, progress=False)["embedding_norm"])
        temb = np.asarray(compute_features(target, cfg, store, which={"embedding"}, progress=False)["embedding_norm"])
        print("embeddings ready:", _uptime(), flush=True)
        if "density_ratio" in args.only:
            rows += bench_density_ratio(emb, temb, budget, args.seed)
        if "gradient_match" in args.only:
            rows += bench_gradient_match(emb, pool["label"].to_numpy(), temb, budget, args.seed)
    print("after:", _uptime())
    for r in rows:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
