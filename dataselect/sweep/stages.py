"""Study-level glue shared by the CLI stages and the sweep.

Each function takes a validated :class:`StudyConfig` and does one stage for
the whole study, reusing every cached artifact: stand-in LMs, feature
shards, manifests. The sweep calls the same functions, so a stage run alone
and the same stage inside a sweep produce the same files.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.core.config import STANDIN_PREFIX, StudyConfig
from dataselect.core.data import TextDataset, load_dataset
from dataselect.core.errors import UserError

log = logging.getLogger(__name__)


def resolve_standins(cfg: StudyConfig, ds: TextDataset, *, build: bool = True) -> StudyConfig:
    """Replace ``standin:<kind>`` model refs with trained stand-in folders.

    Stand-ins are trained on the pool's texts (never the eval split) and
    cached under ``<study_dir>/models``; see :mod:`dataselect.core.standin`.
    ``build=False`` trains nothing: a ref whose stand-in is not trained yet stays as it is.
    """
    from dataselect.core.standin import train_standin_lm

    built: dict[str, str] = {}

    def resolve(ref: str | None) -> str | None:
        if ref is None or not ref.startswith(STANDIN_PREFIX):
            return ref
        if ref not in built:
            kind = ref[len(STANDIN_PREFIX):]
            folder = train_standin_lm(ds.train["text"].tolist(), cfg.cache_root / "models", kind=kind, build=build)
            built[ref] = str(folder) if build or (folder / "config.json").is_file() else ref
        return built[ref]

    feats = cfg.features.model_copy(update={
        "encoder": resolve(cfg.features.encoder),
        "perplexity_model": resolve(cfg.features.perplexity_model),
        "mlm_model": resolve(cfg.features.mlm_model),
        "judge_model": resolve(cfg.features.judge_model),
    })
    trainer = cfg.trainer.model_copy(update={"model": resolve(cfg.trainer.model)})
    return cfg.model_copy(update={"features": feats, "trainer": trainer})


def build_standins(cfg: StudyConfig) -> dict[str, str]:
    """Train (or reuse) every stand-in the config names; ``{ref: folder}``."""
    ds = load_dataset(cfg.dataset, cfg.target)
    resolved = resolve_standins(cfg, ds)
    pairs = [
        (cfg.features.encoder, resolved.features.encoder),
        (cfg.features.perplexity_model, resolved.features.perplexity_model),
        (cfg.features.mlm_model, resolved.features.mlm_model),
        (cfg.features.judge_model, resolved.features.judge_model),
        (cfg.trainer.model, resolved.trainer.model),
    ]
    return {a: b for a, b in pairs if a and b and a != b}


def study_features(cfg: StudyConfig, ds: TextDataset | None = None,
                   columns: Collection[str] | None = None) -> tuple[Any, Any]:
    """Feature tables of the pool (all configured families) and of the eval split (embeddings).

    Stand-ins are resolved first; Ray is started (or joined) if needed. The
    pool table holds only ``columns`` (None: all); every family is cached.
    """
    from dataselect.features import compute_features
    from dataselect.sweep.ray_runtime import init_ray

    ds = ds or load_dataset(cfg.dataset, cfg.target)
    cfg = resolve_standins(cfg, ds)
    init_ray(cfg.ray)
    store = cfg.cache_root / "features"
    pool = compute_features(ds.train, cfg.features, store, columns=columns)
    evalf = compute_features(ds.eval, cfg.features, store, which={"embedding"})
    return pool, evalf


def target_features(cfg: StudyConfig, ds: TextDataset, columns: Collection[str] = ()) -> Any:
    """The target's feature table (the pool's families, cached alike), or None without a target.

    Its ``label`` holds the classes of the labelled slice only
    (``target.labelled`` rows, drawn with seed 0; ``-1`` for the rest), so no
    selector sees more target labels than the config grants.
    """
    if ds.target is None or cfg.target is None:
        return None
    from dataselect.core.target import NO_LABEL, granted_labels
    from dataselect.features import compute_features

    frame = ds.target.frame.copy()
    frame.loc[~granted_labels(frame, cfg.target.labelled), "label"] = NO_LABEL
    return compute_features(frame, cfg.features, cfg.cache_root / "features", columns=columns)


def study_selections(cfg: StudyConfig) -> dict[str, Path | None]:
    """Run the select stage for every grid cell; ``{"selector@fraction#seed": manifest}``."""
    from dataselect.sweep.select_stage import run_select_stage

    ds = load_dataset(cfg.dataset, cfg.target)
    pool, _ = study_features(cfg, ds, columns=())
    from dataselect.features.table_ref import TableRef

    # Tasks read the saved shards themselves: the driver passes the store path and key.
    ref = TableRef(cfg.cache_root / "features", pool.fingerprint)
    target = target_features(resolve_standins(cfg, ds), ds)
    out = run_select_stage(cfg, ref, features_fingerprint=pool.fingerprint,
                           manifest_dir=cfg.study_dir / "manifests",
                           target=None if target is None else TableRef(ref.root, target.fingerprint),
                           transductive=ds.target is not None and ds.target.transductive)
    return {f"{k[0]}@{k[1]:g}#{k[2]}": r.path for k, r in out.items()}


def _cell(cfg: StudyConfig, selector: str, fraction: float, seed: int) -> None:
    keys = [s.key for s in cfg.selectors] + (["full"] if cfg.grid.full_reference else [])
    if selector not in keys:
        raise UserError(f"--selector: {selector!r} is not in the config; choose from {keys}")
    if selector != "full" and fraction not in cfg.grid.fractions:
        raise UserError(f"--fraction: {fraction!r} is not in grid.fractions {cfg.grid.fractions}")
    only = next((s.fractions for s in cfg.selectors if s.key == selector), None)
    if only is not None and fraction not in only:
        raise UserError(f"--fraction: {selector!r} runs only at {only} (selectors[].fractions)")
    if seed not in cfg.grid.seeds:
        raise UserError(f"--seed: {seed!r} is not in grid.seeds {cfg.grid.seeds}")


def train_one(cfg: StudyConfig, selector: str, fraction: float, seed: int,
              *, save_dir: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one classifier on one grid cell's selection."""
    from dataselect.core.manifest import read_manifest
    from dataselect.train import finetune, probe

    _cell(cfg, selector, fraction, seed)
    if selector == "full":
        fraction = 1.0
    ds = load_dataset(cfg.dataset, cfg.target)
    manifests = study_selections(cfg)
    path = manifests.get(f"{selector}@{fraction:g}#{seed}")
    if path is None:
        raise UserError(f"selection {selector} at fraction {fraction:g}, seed {seed} failed; see the log")
    # Manifest pick order for fine-tuning, sorted rows for probes: the same
    # rows in the same order as the sweep's trial (sweep.run_trial), so the
    # same seed gives the same classifier.
    pos = ds.train.set_index("id").index.get_indexer(read_manifest(path).ids)
    cfg = resolve_standins(cfg, ds)
    if cfg.trainer.mode == "probe":
        if save_dir is not None:
            raise UserError("--save: probe heads are not saved; use trainer.mode: finetune")
        pool, evalf = study_features(cfg, ds, columns=("embedding", "embedding_norm"))
        pos = np.sort(pos)
        col = probe_column(cfg, pool)
        return probe(np.asarray(pool[col])[pos], ds.train["label"].to_numpy()[pos],
                     np.asarray(evalf[col]), ds.eval["label"].to_numpy(), cfg.trainer,
                     seed=seed, num_labels=ds.num_labels)
    return finetune(ds.train.iloc[pos].reset_index(drop=True), ds.eval, cfg.trainer,
                    num_labels=ds.num_labels, seed=seed, save_dir=save_dir)


def evaluate_saved(cfg: StudyConfig, model_dir: Path) -> dict[str, Any]:
    """Score a classifier saved by ``train --save`` on the config's eval split."""
    from dataselect.core.models import load_classifier, load_tokenizer, pick_device
    from dataselect.train import predict
    from dataselect.train.metrics import classification_metrics

    ds = load_dataset(cfg.dataset, cfg.target)
    device = pick_device(cfg.trainer.device)
    model = load_classifier(str(model_dir), num_labels=ds.num_labels, device=device)
    tok = load_tokenizer(str(model_dir))
    pred = predict(model, tok, ds.eval["text"].tolist(), batch_size=cfg.trainer.eval_batch_size,
                   max_length=cfg.trainer.max_length, device=device)
    return classification_metrics(ds.eval["label"].to_numpy(), pred, ds.num_labels)


def probe_column(cfg: StudyConfig, table: Any) -> str:
    """The feature column a probe trains on: ``trainer.probe_features`` if stored, else ``embedding``."""
    want = cfg.trainer.probe_features
    if want in table:
        return want
    log.warning("trainer.probe_features=%s is not in the feature store (features.normalize: false?); "
                "the probe uses raw 'embedding'", want)
    return "embedding"
