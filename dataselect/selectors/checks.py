"""A study's selector specs, checked at config load: names, parameters, the features they read.

Passed to :func:`dataselect.core.config.parse_config` at the boundary
(:func:`dataselect.sweep.study.parse_study`): the config module stays below
the selectors, and every mistake is still one line naming ``selectors[i]``.
"""

from __future__ import annotations

from collections.abc import Callable

from dataselect.core.config import FeaturesConfig, StudyConfig
from dataselect.core.errors import ConfigError
from dataselect.core.selection import TARGET_PREFIX
from dataselect.selectors.registry import available, get_selector

__all__ = ["check_selectors"]


def check_selectors(cfg: StudyConfig, report: Callable[[str], None]) -> None:
    """Report every selector spec whose name, parameters, target or features are wrong."""
    known = available()
    for i, spec in enumerate(cfg.selectors):
        if spec.name not in known:
            report(f"selectors[{i}].name: unknown selector {spec.name!r}; known: {sorted(known)}")
            continue
        try:
            selector = get_selector(spec.name, **spec.params)
        except (TypeError, ValueError) as err:
            report(f"selectors[{i}].params: {(str(err).strip().splitlines() or [type(err).__name__])[0]}")
            continue
        columns = selector.required()
        if cfg.target is None and any(c.startswith(TARGET_PREFIX) for c in columns):
            report(f"selectors[{i}] ({spec.name!r}) selects toward a target: add a target: block "
                   "(path, split or holdout; see the config reference in README.md)")
        try:
            check_families(cfg.features, i, spec.name,
                           tuple(dict.fromkeys(c.removeprefix(TARGET_PREFIX) for c in columns)))
        except ConfigError as err:
            report(str(err))


def check_families(feats: FeaturesConfig, i: int, name: str, columns: tuple[str, ...]) -> None:
    """A selector reading an opt-in feature family needs that family switched on.

    Checked at load, rather than switched on silently in the pipeline: these
    families cost model inference over the whole pool, and the config should
    say so.
    """
    from dataselect.features.perplexity import COLUMNS as LM_COLUMNS
    from dataselect.features.text_metrics import COLUMNS as TEXT_METRICS

    needs = [
        (lambda c: c.startswith("judge_"), feats.llm_judge, "features.llm_judge", "true"),
        (lambda c: c == "eda_embedding", feats.consistency_variants > 0,
         "features.consistency_variants", "> 0"),
        (lambda c: c in ("pseudo_perplexity", "mlm_mean_nll"), feats.mlm_model is not None,
         "features.mlm_model", "a masked-LM reference"),
        (lambda c: c == "ngram_buckets", feats.ngrams, "features.ngrams", "true"),
        (lambda c: c in TEXT_METRICS, feats.text_metrics, "features.text_metrics", "true"),
        (lambda c: c in LM_COLUMNS, feats.perplexity_model is not None,
         "features.perplexity_model", "a causal LM (e.g. 'standin:qwen3' offline)"),
    ]
    for col in columns:
        for matches, enabled, field, want in needs:
            if matches(col) and not enabled:
                got = getattr(feats, field.split(".")[1])
                raise ConfigError(f"selectors[{i}] ({name!r}) reads feature {col!r}: set {field} "
                                  f"to {want}; got {got!r}")
