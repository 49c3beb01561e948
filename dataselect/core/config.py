"""Typed study config: one YAML file describes a whole study.

Validated once, at the boundary (:mod:`dataselect.core.config_loader`); code below
receives these frozen objects and never re-reads raw dicts. Every problem
becomes one :class:`~dataselect.core.errors.ConfigError` line that names the
field, e.g. ``grid.fractions[2]: 1.5 is not in (0, 1]``.

Relative paths (``dataset.source``, ``output_dir``) resolve against the
directory the command runs in, so ``experiments/local.yaml`` works from the
repository root on any machine.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# The mission's defaults: ModernBERT for encoding and classification, Qwen3 for
# perplexity. Offline runs name stand-ins in their YAML (see experiments/local.yaml).
DEFAULT_ENCODER = "answerdotai/ModernBERT-base"
DEFAULT_CAUSAL_LM = "Qwen/Qwen3-1.7B-Base"

# ``standin:<kind>`` names a tiny model the project trains on the pool's texts
# (dataselect.core.standin), for machines where the real models cannot be fetched.
STANDIN_PREFIX = "standin:"
_STANDIN_KINDS = {"qwen3": "causal LM", "modernbert": "masked LM"}


def file_slug(text: str) -> str:
    """``text`` as a file-name part: runs of characters other than word, ``.``, ``-`` become ``_``.

    Trial folders are named by selector label; two labels that slug alike
    (``a/b``, ``a b``) are refused at load, not left to share a folder.
    """
    return re.sub(r"[^\w.-]+", "_", text)


def fraction_slug(fraction: float) -> str:
    """A fraction as trial names write it (``0.05`` -> ``0.05``, 6 significant digits):
    two fractions of one grid with the same slug would share trial names, so they are refused."""
    return f"{fraction:g}"


def _check_standin(ref: str | None, allowed: set[str]) -> str | None:
    if ref is not None and ref.startswith(STANDIN_PREFIX):
        kind = ref[len(STANDIN_PREFIX):]
        if kind not in allowed:
            raise ValueError(f"stand-in {ref!r} is not allowed here; use one of "
                             f"{sorted(STANDIN_PREFIX + k for k in allowed)}")
    return ref


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LabelNoiseConfig(_Section):
    """Seeded label flips in the *training pool*, to study what selectors do with noise.

    ``round(rate * n_pool)`` rows, drawn without replacement, get a wrong label:
    ``uniform`` draws it uniformly from the other classes; ``asymmetric``
    applies one fixed class permutation, ``k -> (k + 1) mod K`` (for two
    classes both kinds swap the label). The eval split is never touched.
    """

    rate: Annotated[float, Field(ge=0, lt=1)]
    seed: Annotated[int, Field(ge=0)] = 0
    kind: Literal["uniform", "asymmetric"] = "uniform"
    split: str = "train"
    """Only ``train`` (the pool): corrupting the eval split would corrupt the measurement."""

    @field_validator("split")
    @classmethod
    def _pool_only(cls, v: str) -> str:
        if v != "train":
            raise ValueError("label noise applies to the training pool only ('train'); the eval "
                             "split is never corrupted")
        return v


class HoldoutConfig(_Section):
    """Whole sentences held out of the pool, with every pool row that is a token span
    of one (:mod:`dataselect.core.holdout`): none of their phrases is ever trained on."""

    sentences: Annotated[int, Field(gt=0)]
    """How many distinct whole sentences (rows that are no phrase of a longer row)."""
    seed: Annotated[int, Field(ge=0)] = 0


class DatasetConfig(_Section):
    """Where the labelled texts come from.

    ``source`` is a hub id (``glue/sst2``: loaded by ``datasets.load_dataset``)
    or a local path: a folder holding ``{split}.{tsv,csv,jsonl,parquet}`` or a
    single file (then only ``train_split`` is read from it, and ``eval_split``
    must be another file path).
    """

    source: str = "../shared/data/sst2"
    train_split: str = "train"
    eval_split: str = "validation"
    text_column: str = "sentence"
    label_column: str = "label"
    format: Literal["auto", "tsv", "csv", "jsonl", "parquet"] = "auto"
    label_names: list[str] | None = None
    pool_size: Annotated[int, Field(gt=0)] | None = None
    """Seeded subsample of the train split used as the selection pool (None: all rows)."""
    pool_seed: Annotated[int, Field(ge=0)] = 0
    eval_size: Annotated[int, Field(gt=0)] | None = None
    """Seeded subsample of the eval split (None: all rows)."""
    label_noise: LabelNoiseConfig | None = None
    """Flip a seeded share of the pool's labels before features and selection (None: off)."""
    header: bool = True
    """TSV/CSV files start with a header row. ``false``: the first row is data and the
    columns are named by ``columns`` (default ``[text_column, label_column]``)."""
    columns: Annotated[list[str], Field(min_length=1)] | None = None
    """Column names, in file order, of a headerless TSV/CSV (``header: false``)."""
    id_column: str | None = None
    """Column holding unique integer row ids (None: the row's position in its file)."""
    eval_holdout: HoldoutConfig | None = None
    """Move whole train sentences (and every train row that is a phrase of one) out of
    the pool and into the eval set, beside ``eval_split``: a larger, leak-free eval.
    Their eval ids are ``-1 - train id``."""
    validation_holdout: HoldoutConfig | None = None
    """A validation set apart from the eval set: whole train sentences drawn after the
    eval and target holdouts (disjoint from both), their phrases out of the pool too, so
    a study can choose among its arms on rows the eval set does not hold. Trials score
    on it beside the eval set (``validation_predictions.parquet``); ids ``-1 - train id``."""
    holdout_match: Literal["whitespace", "punctuation"] = "punctuation"
    """How the holdout rule compares texts (:mod:`dataselect.core.holdout`): ``punctuation``
    drops every non-alphanumeric character of each token first, so SST's two tokenisations
    of one sentence ("etc ." / "etc. .") count as one; ``whitespace`` only collapses
    whitespace (the rule before this setting: studies begun then pin it). Also the key by
    which target texts are found in the pool and in the eval set."""

    @model_validator(mode="after")
    def _columns_need_headerless(self) -> DatasetConfig:
        if self.columns is None:
            return self
        if self.header:
            raise ValueError("columns names the columns of a headerless file; set header: false")
        missing = [c for c in (self.text_column, self.label_column, self.id_column)
                   if c is not None and c not in self.columns]
        if missing:
            raise ValueError(f"columns {self.columns} lack {missing} (text_column / label_column / id_column)")
        return self


class TargetConfig(_Section):
    """Where the classifier will be used: texts that target-aware selectors select toward.

    Exactly one source. ``path``: a file or folder (TSV/CSV/JSONL/parquet)
    of texts. ``split``: a split of the dataset, its texts (and, with
    ``labelled``, that many of its labels); the train split loses the rows the
    holdout rule took out of the pool (held-out eval and validation sentences
    and their phrases), so no held-out eval text reaches a selector through it.
    ``holdout``: whole train sentences taken out of the pool by the holdout
    rule (after ``dataset.eval_holdout``'s, disjoint from them) and never
    trained on. A target that shares texts with the eval set (the eval split,
    or a file holding eval sentences) makes every selection that reads it
    *transductive*, found by text, whatever the source (said in the console
    and the report); with ``labelled``, the labels of such rows are *eval
    labels* handed to ``gradient_match``, and the report says so.
    """

    path: str | None = None
    split: str | None = None
    holdout: HoldoutConfig | None = None
    text_column: str | None = None
    """Text column of a ``path`` source (default: ``dataset.text_column``)."""
    label_column: str | None = None
    """Label column of a ``path`` source, for a labelled slice (``labelled``)."""
    format: Literal["auto", "tsv", "csv", "jsonl", "parquet"] = "auto"
    header: bool = True
    labelled: Annotated[int, Field(ge=0)] = 0
    """Target rows whose labels ``gradient_match`` may use for the target gradient
    (the first ones, seeded order); 0: the warm-up model's predicted labels. On a
    target with eval texts (``split`` of the eval split) these are eval labels."""

    @model_validator(mode="after")
    def _one_source(self) -> TargetConfig:
        given = [k for k in ("path", "split", "holdout") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, split, holdout; got {given or 'none'}")
        if self.path is None and (self.text_column or self.label_column):
            raise ValueError("text_column / label_column name a path source's columns; "
                             "split and holdout use the dataset's")
        if self.path is not None and self.labelled and self.label_column is None:
            raise ValueError(f"labelled: {self.labelled} needs label_column for a path source")
        return self


class FeaturesConfig(_Section):
    """Which features to compute once per dataset and cache as parquet shards."""

    encoder: str = DEFAULT_ENCODER
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    """Also store an L2-normalised copy (``embedding_norm``) for cosine geometry."""
    max_length: Annotated[int, Field(gt=1, le=8192)] = 128
    batch_size: Annotated[int, Field(gt=0)] = 64
    perplexity_model: str | None = DEFAULT_CAUSAL_LM
    perplexity_batch_size: Annotated[int, Field(gt=0)] = 16
    mlm_model: str | None = None
    """Encoder with an MLM head for pseudo-perplexity (None: skip the feature)."""
    mlm_batch_size: Annotated[int, Field(gt=0)] = 256
    """Masked copies per forward pass (a text of n tokens is n copies)."""
    text_metrics: bool = True
    llm_judge: bool = False
    """LM-judge flags (``judge_ambiguous``, ``judge_sarcastic``) for the ``llm_judge`` selector."""
    judge_model: str | None = None
    """Causal LM for ``llm_judge`` (None: ``perplexity_model``)."""
    consistency_variants: Annotated[int, Field(ge=0, le=64)] = 0
    """EDA perturbations per row, embedded for the ``consistency`` selector (0: off)."""
    consistency_alpha: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    """EDA's alpha: share of words each perturbation touches (Wei & Zou 2019 use 0.05-0.1 on large sets)."""
    consistency_seed: Annotated[int, Field(ge=0)] = 0
    ngrams: bool = False
    """Hashed word n-grams (``ngram_buckets``) for ``dsir`` and ``density_ratio``'s
    Moore–Lewis method: a second or two per 67k rows, no model."""
    ngram_n: Annotated[int, Field(ge=1, le=5)] = 2
    """Longest n-gram (2: unigrams and bigrams, the DSIR authors' default)."""
    ngram_buckets: Annotated[int, Field(ge=16, le=2**24)] = 10_000
    """Hash buckets (the DSIR authors' default)."""
    num_actors: Annotated[int, Field(gt=0)] = 1
    shard_size: Annotated[int, Field(gt=0)] = 8192
    """Rows per parquet shard: the unit of caching and of resume."""
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("perplexity_model")
    @classmethod
    def _causal_standin(cls, v: str | None) -> str | None:
        return _check_standin(v, {"qwen3"})

    @field_validator("judge_model")
    @classmethod
    def _judge_standin(cls, v: str | None) -> str | None:
        return _check_standin(v, {"qwen3"})

    @model_validator(mode="after")
    def _judge_has_model(self) -> FeaturesConfig:
        if self.llm_judge and self.judge_model is None and self.perplexity_model is None:
            raise ValueError("llm_judge: true needs judge_model or "
                             "perplexity_model; both are None")
        return self

    @field_validator("mlm_model")
    @classmethod
    def _mlm_standin(cls, v: str | None) -> str | None:
        return _check_standin(v, {"modernbert"})

    @field_validator("encoder")
    @classmethod
    def _encoder_standin(cls, v: str) -> str:
        return _check_standin(v, {"modernbert"})  # type: ignore[return-value]


class SelectorSpec(_Section):
    """One selector of the grid: registry ``name``, its ``params``, a unique ``label``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    fractions: Annotated[list[float], Field(min_length=1)] | None = None
    """The grid fractions this arm runs at (None: every one of ``grid.fractions``). A
    confirmatory study (``confirm``) trains each chosen arm only where the screen chose it,
    so each fraction's Holm family is that fraction's chosen arms."""

    @property
    def key(self) -> str:
        """The label that names this selector in results and reports."""
        return self.label or self.name


class GridConfig(_Section):
    """The selector × fraction × seed grid."""

    fractions: Annotated[list[float], Field(min_length=1)]
    seeds: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [0, 1, 2])
    full_reference: bool = True
    """Add one trial per seed trained on the whole pool, as the report's reference."""
    full_reference_seeds: Annotated[int, Field(gt=0)] | None = None
    """Train the whole-pool reference on only the first N seeds (None: every seed):
    on a large pool it costs more than the rest of the grid."""
    selector_streams: Literal["shared", "own"] = "own"
    """Random streams of the selectors (:func:`dataselect.selectors.base.stream_seed`):
    ``own`` (the default), each selector draws from a generator keyed by its registry
    name and the seed, so no selector's internal draws (a warm-up sample, a k-means
    seed) repeat ``random``'s subset at the same seed; ``random`` keeps
    ``default_rng(seed)``, so its subsets stay bit-identical. A composite (pipeline,
    fusion, per_class) hands its members numbers from its own stream. ``shared``: every
    selector draws from ``default_rng(seed)`` (the rule before this setting: studies
    begun then pin it); at 5 % gradient_match's warm-up slice was then exactly random's
    subset at the same seed (issue 36 item 5). ``Selector.select`` called directly
    defaults to ``shared``."""

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, v: list[float]) -> list[float]:
        for i, f in enumerate(v):
            if not (math.isfinite(f) and 0 < f <= 1):
                raise ListItemError(i, f"{f!r} is not in (0, 1]")
        _no_duplicates(v)
        slugs: dict[str, int] = {}
        for i, f in enumerate(v):
            j = slugs.setdefault(fraction_slug(f), i)
            if j != i:
                # 0.1 and 0.1000001 would train two sets of trials under one name each.
                raise ListItemError(i, f"{f!r} is too close to fractions[{j}] = {v[j]!r}: both name "
                                       f"their trials *_f{fraction_slug(f)}_*; fractions must differ "
                                       "in their first 6 significant digits")
        return v

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        for i, s in enumerate(v):
            if s < 0:  # numpy's default_rng takes non-negative seeds only
                raise ListItemError(i, f"{s!r} is negative; seeds are integers >= 0")
        _no_duplicates(v)
        return v


class TrainerConfig(_Section):
    """How each subset is turned into a classifier.

    ``finetune`` fine-tunes ``AutoModelForSequenceClassification``; defaults
    follow the ModernBERT paper's GLUE recipe for base models (Warner et al.
    2024, Table 9: LR 8e-5, weight decay 1e-5, 2 epochs for SST-2).
    ``probe`` fits a head on cached frozen embeddings: a cheap CPU proxy.
    """

    mode: Literal["finetune", "probe"] = "finetune"
    model: str = DEFAULT_ENCODER
    learning_rate: Annotated[float, Field(gt=0)] = 8e-5
    weight_decay: Annotated[float, Field(ge=0)] = 1e-5
    epochs: Annotated[float, Field(gt=0)] = 2.0
    min_steps: Annotated[int, Field(ge=0)] = 0
    """Train at least this many optimiser steps (more epochs over a small subset):
    at 1-5 % budgets a fixed epoch count is too few steps to train at all."""
    batch_size: Annotated[int, Field(gt=0)] = 32
    eval_batch_size: Annotated[int, Field(gt=0)] = 128
    max_length: Annotated[int, Field(gt=1, le=8192)] = 128
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    probe: Literal["logreg", "mlp"] = "logreg"
    probe_c: Annotated[float, Field(gt=0)] = 1.0
    probe_features: Literal["embedding_norm", "embedding"] = "embedding_norm"
    """Probe input: L2-normalised embeddings (what sentence-transformers' MiniLM
    pipeline ends with; ~2 points better on a 4-class set) or the raw mean-pooled
    ones. Falls back to ``embedding`` when the store has no normalised copy."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    adamw: Literal["fused", "foreach"] = "fused"
    """AdamW kernel: ``fused`` (one pass over every parameter, ~14x faster per step on CPU
    than the per-tensor loop the trainer used before, equal to it up to float rounding) or
    ``foreach`` (torch's multi-tensor AdamW: bit-for-bit the old per-tensor loop, ~1.8x
    faster; studies begun before this setting pin it so their trials keep their keys)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Arithmetic of training and eval: ``bf16`` autocast, ``fp32``, or ``auto`` (bf16 where
    the hardware is fast at it and shown equivalent, fp32 elsewhere; decided per trial on
    the node it runs on, :mod:`dataselect.train.precision`). The precision used is
    recorded in each result (``compute_dtype``) and is part of its cache key."""


class RayConfig(_Section):
    """Where and how wide the sweep runs."""

    address: str | None = None
    """Ray cluster address (``ray://host:10001`` or ``host:6379``); None: local ``ray.init()``."""
    num_cpus: Annotated[int, Field(gt=0)] | None = None
    cpus_per_trial: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] = 0.0
    max_concurrent_trials: Annotated[int, Field(gt=0)] | None = None
    temp_dir: str | None = None
    include_dashboard: bool = False
    select_task_memory_gb: Annotated[float, Field(gt=0)] | None = None
    """Memory (GiB) one select task may use, for selectors with ``partitions: auto``;
    None: the smallest node's Ray ``memory`` divided by its CPUs."""
    max_trial_retries: Annotated[int, Field(ge=-1)] = 2
    """Restarts of a trial whose worker process or node died (Tune ``FailureConfig``;
    -1: no limit). A trial's own error (failed selection, bad manifest) is not retried."""

    @field_validator("temp_dir")
    @classmethod
    def _short_temp_dir(cls, v: str | None) -> str | None:
        # Ray puts unix sockets under it: sun_path holds 107 bytes and Ray
        # appends ~60 (session_<date>_<pid>/sockets/plasma_store).
        if v is not None and len(os.path.abspath(v).encode()) > 45:
            raise ValueError("too long for Ray's socket paths (at most 45 bytes as an "
                             "absolute path), e.g. /tmp/ray-<name>")
        return v


class ReportConfig(_Section):
    """What the report leads with."""

    metric: Literal["auto", "accuracy", "macro_f1"] = "auto"
    """The primary metric of the conclusion, the forest plot and the efficiency curve
    (every metric stays in the tables). ``auto``: accuracy, or macro-F1 when the eval
    set's largest class holds more than :data:`IMBALANCED` of its rows."""
    holm: Literal["fraction", "study"] = "fraction"
    """The Holm family: every selector of one fraction (and metric), or every
    comparison of the study at once (stricter: a study-wide false-discovery guard)."""

    def primary_metric(self, eval_label_counts: list[int] | None) -> str:
        """The metric the report leads with, given the eval set's rows per class."""
        if self.metric != "auto":
            return self.metric
        counts = [int(c) for c in eval_label_counts or []]
        imbalanced = sum(counts) > 0 and max(counts) / sum(counts) > IMBALANCED
        return "macro_f1" if imbalanced else "accuracy"


IMBALANCED = 0.6
"""Largest class share of the eval set above which ``report.metric: auto`` is macro-F1
(at 60 / 40 a classifier that always says the majority already scores 0.6 accuracy)."""


class ConfirmConfig(_Section):
    """A confirmatory study: arms chosen from a finished screening study by a stated rule.

    The arms are resolved from the screen's report before anything trains
    (:mod:`dataselect.sweep.confirm`) and pre-registered in the study folder
    (``preregistration.json``); the study trains them beside ``random`` on its own
    ``grid.seeds``, which must be disjoint from the screen's, and each fraction's Holm
    family is the ``k`` arms chosen there.
    """

    screen: str
    """The screening study: its folder (``runs/<name>``, report in ``report/``) or a folder
    holding its report (``reports/<name>``, an archive or a committed report)."""
    rule: Literal["top_delta", "top_lower"] = "top_delta"
    """Per fraction, the ``k`` arms with the largest Δ vs random (``top_delta``) or the largest
    lower 95 % bound (``top_lower``), on the screen's validation rows when it scored them
    (``validation_summary.csv``), else on its eval rows (``summary.csv``)."""
    k: Annotated[int, Field(gt=0)] = 4
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    """The screen's metric the rule ranks by."""
    effect: Annotated[float, Field(gt=0, lt=1)] = 0.015
    """The detectable effect ``plan`` sizes the seeds for (1.5 points), at 80 % power after
    Holm over ``k``."""


class StudyConfig(_Section):
    """A whole study: data, features, selectors, grid, trainer, output, Ray, report."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*$")]
    output_dir: str = "runs"
    cache_dir: str | None = None
    """Folder for ``features/`` and stand-in ``models/`` (None: the study folder).

    Studies on the same pool texts (e.g. with and without label noise) that
    name one folder compute features and stand-ins once. When it is another
    study's folder, that study's finished trials are reused too wherever they
    trained on the same rows with the same trainer and seed (checked by content)."""
    archive: str | None = "auto"
    """A study archive (``dataselect archive``, e.g. ``reports/<name>``) whose finished
    fine-tune trials this study adopts where they trained on the same rows, texts,
    trainer and seed (checked by content, as ``cache_dir``'s): ``auto``, the default,
    is ``reports/<name>`` when that folder holds one; ``null``: none. It enters no
    key: an adopted trial is the one the study would have trained."""
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    selectors: Annotated[list[SelectorSpec], Field(min_length=1)]
    grid: GridConfig
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    target: TargetConfig | None = None
    """Texts of the distribution the classifier is judged on, for target-aware selectors."""
    report: ReportConfig = Field(default_factory=ReportConfig)
    confirm: ConfirmConfig | None = None
    """Make this a confirmatory study of a screen's chosen arms (None: an ordinary study).
    Its ``selectors`` list only the baseline, ``random``: the arms come from the screen."""

    @model_validator(mode="after")
    def _arm_fractions(self) -> StudyConfig:
        grid = set(self.grid.fractions)
        for i, s in enumerate(self.selectors):
            extra = [f for f in s.fractions or [] if f not in grid]
            if extra:
                raise ValueError(f"selectors[{i}].fractions: {extra} not in grid.fractions {self.grid.fractions}")
        return self

    @model_validator(mode="after")
    def _unique_labels(self) -> StudyConfig:
        seen: dict[str, int] = {}
        slugs: dict[str, int] = {}
        for i, s in enumerate(self.selectors):
            if s.key in seen:
                raise ValueError(
                    f"selectors[{i}]: duplicate selector label {s.key!r} "
                    f"(also selectors[{seen[s.key]}]); give one a distinct 'label'"
                )
            if (slug := file_slug(s.key)) in slugs:
                j = slugs[slug]
                raise ValueError(
                    f"selectors[{i}]: label {s.key!r} and selectors[{j}]'s {self.selectors[j].key!r} "
                    f"name the same trial folders ({slug!r}); give one a distinct 'label'"
                )
            seen[s.key], slugs[slug] = i, i
        return self

    @property
    def study_dir(self) -> Path:
        """All artifacts of this study: features/, manifests/, tune/, report/."""
        return Path(self.output_dir) / self.name

    @property
    def lending_study(self) -> Path | None:
        """``cache_dir`` when it is another study's folder with trials, whose finished
        fine-tune trials this study may adopt (``sweep.trial.reused_training``); else None."""
        other = self.cache_root.resolve()
        if other == self.study_dir.resolve() or not (other / "trials").is_dir():
            return None
        return other

    @property
    def archive_dir(self) -> Path | None:
        """The folder ``archive`` names (``auto``: ``reports/<name>``, which may hold no archive)."""
        if self.archive is None:
            return None
        return Path("reports") / self.name if self.archive == "auto" else Path(self.archive)

    @property
    def cache_root(self) -> Path:
        """Where feature shards and stand-in models are cached."""
        return Path(self.cache_dir) if self.cache_dir is not None else self.study_dir


class ListItemError(ValueError):
    """A list item error that knows its index, so the message names ``field[i]``."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index
        self.message = message


def _no_duplicates(values: list[Any]) -> None:
    seen: set[Any] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ListItemError(i, f"{v!r} is repeated")
        seen.add(v)


def looks_like_hub_id(ref: str) -> bool:
    """``org/name`` or ``name`` with hub-legal characters, and not an existing path."""
    return bool(_HUB_ID.match(ref)) and not Path(ref).exists()
