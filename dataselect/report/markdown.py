"""``report.md`` and its files, written from what a study left on disk.

Everything is read back from files (each trial's ``params.json``,
``result.json`` and ``error.txt`` in ``<study_dir>/tune/<name>/``; its
``predictions.parquet`` and ``kept.parquet`` in ``<study_dir>/trials/``;
the sweep's ``study.json``), never from a live sweep, so ``dataselect
report`` can rebuild it any time, also after a crash or on another machine.

Statistics: :mod:`dataselect.report.tables` (every selector against ``random``,
with seeds and eval rows both as noise; Holm over each fraction). Written to
``report/summary.csv``; report.md opens with one sentence per fraction.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataselect.report.archive import is_archive, open_archive
from dataselect.report.confirm import confirm_lines
from dataselect.report.cost import cost_lines, cost_table
from dataselect.report.figures import draw_figures, overlap_figure, save_figure
from dataselect.report.results import STATUS_OK, StudyFolder, results_frame
from dataselect.report.subsets import share_column
from dataselect.report.tables import (
    SUMMARY_COLUMNS,
    conclusions,
    fmt_num,
    md_cell,
    metric_table,
    power_by_fraction,
    power_lines,
    summary_table,
    top_rows,
    uneven_seeds,
)
from dataselect.report.validation import write_validation
from dataselect.train.metrics import METRICS

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- report
def _model_lines(meta: dict[str, Any]) -> list[str]:
    lines = []
    for role, info in (meta.get("models") or {}).items():
        if not info:
            continue
        note = ""
        if not info.get("is_default"):
            standin = (info.get("offline_short_name") or info.get("standin")
                       or str(info.get("ref", "")).startswith("standin:"))
            kind = "offline stand-in" if standin else "substitute"
            note = f" — **{kind}** for the mission default `{info.get('default')}`; numbers are not the default model's"
        lines.append(f"- {role}: `{info.get('ref')}`{note}")
    return lines



def _kept_lines(comp: pd.DataFrame, label_names: list[str], noise: dict[str, Any] | None,
                n_pool: int | None, target: dict[str, Any] | None = None,
                marks: dict[str, str] | None = None) -> list[str]:
    if comp.empty:
        return []
    marks = marks or {}
    extra = [c for c in ("mean_perplexity", "mean_pseudo_perplexity") if c in comp]
    noisy = "flipped_kept" in comp
    aimed = "target_auc" in comp
    head = ["selector", "fraction", "rows", *[f"{md_cell(n)} share" for n in label_names], "mean words",
            *[c.removeprefix("mean_").replace("_", "-") for c in extra],
            *(["target AUC", "eval AUC"] if aimed else [])]
    if noisy:
        head += ["flipped kept", "flipped % of subset", "removal precision", "removal recall"]
    lines = ["## What was kept", "",
             "Subset composition per selector × fraction, averaged over seeds (`kept.csv`)."]
    if target:
        lines += ["", f"The target ({_target_source(target)}) has {target['n_rows']:,} rows of mean "
                  f"{target['mean_words']:.1f} words. *Target AUC*: a logistic regression told subset "
                  "rows from target rows on the pool's embeddings (their 64 principal components), "
                  "cross-validated (3 folds); 0.5 means "
                  "the subset is indistinguishable from the target, 1.0 fully apart. *Eval AUC*: the same "
                  "against the eval set, rows no selector saw (unless the target is the eval split). "
                  "Below 0.5 against the target means the subset hugs the very target rows it was chosen "
                  "for (held-out target rows look more like the subset than the rest of the target "
                  "does): fitted to the target sample rather than to its distribution. Every selector is "
                  "measured, target-aware or not."]
    if noisy and noise and n_pool:
        rate = noise["n_flipped"] / n_pool
        lines += ["", f"Label noise: {noise['n_flipped']:,} of {n_pool:,} pool labels flipped "
                  f"({rate:.1%}, {noise['kind']}, seed {noise['seed']}); the eval split is clean. A "
                  f"subset that keeps fewer than {rate:.1%} flipped rows filtered noise; removal "
                  f"precision above {rate:.1%} means the removed rows were richer in flips than chance."]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # Records, not itertuples: itertuples renames columns that are not identifiers
    # (``share[Sci/Tech]``), so a label name with a slash or a space was a KeyError.
    for d in comp.to_dict("records"):
        cells = [md_cell(d["selector"]) + marks.get(d["selector"], ""), f"{d['fraction']:g}",
                 f"{d['n_kept']:,.0f}", *[f"{d[share_column(n)]:.3f}" for n in label_names],
                 f"{d['mean_words']:.1f}", *[f"{d[c]:.1f}" for c in extra],
                 *([fmt_num(d.get("target_auc", float("nan")), 3), fmt_num(d.get("eval_auc", float("nan")), 3)]
                   if aimed else [])]
        if noisy:
            cells += [f"{d['flipped_kept']:,.0f}", f"{d['flipped_share']:.1%}",
                      fmt_num(d.get("removal_precision", float("nan")), 3),
                      fmt_num(d.get("removal_recall", float("nan")), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _target_source(target: dict[str, Any]) -> str:
    src = str(target.get("source", "?"))
    if src == "holdout":
        return "whole train sentences held out of the pool, never trained on"
    if target.get("transductive"):
        shared = target.get("n_in_eval")
        rows = f"{shared:,} of its rows are eval texts" if shared is not None else "it holds eval texts"
        return f"{src.replace('split:', 'split ').replace('path:', 'file ')}, and {rows}: **transductive**"
    return src.replace("split:", "the texts of split ").replace("path:", "file ")


def _target_lines(target: dict[str, Any] | None, holdout: dict[str, Any] | None,
                  ok: pd.DataFrame, aware: list[str]) -> list[str]:
    """Setup lines: what the holdout took out, what the target is, which selections read it."""
    lines = []
    if holdout:
        val = int(holdout.get("validation_sentences", 0))
        match = holdout.get("match", "whitespace")
        lines.append(
            f"- Holdout: {holdout['eval_sentences'] + holdout['target_sentences'] + val:,} whole train "
            f"sentences held out ({holdout['eval_sentences']:,} to the eval set, {holdout['target_sentences']:,} "
            f"as the target{f', {val:,} as the validation set' if val else ''}) with every train row that is "
            f"a phrase of one{' (texts compared without punctuation)' if match == 'punctuation' else ''}: "
            f"{holdout['removed_rows']:,} of {holdout['pool_before']:,} train rows left the pool, "
            f"{holdout['pool_after']:,} remain; no phrase of a held-out sentence is trained on.")
    if target:
        given = int(target.get("eval_labels") or 0)
        labels = (f"; **{given:,} eval labels** (labels of eval rows, `target.labelled`) are handed to the "
                  "target-aware selectors that use labels" if given else "")
        lines.append(f"- Target: {target['n_rows']:,} rows, {_target_source(target)}; "
                     f"{target.get('n_in_pool', 0):,} of them also in the pool{labels}.")
        if aware:
            mark = ((" (marked † in the tables: transductive, with eval labels)" if given else
                     " (marked † in the tables: transductive)") if target.get("transductive") else "")
            lines.append(f"- Target-aware selectors, which read the target: {', '.join(f'`{a}`' for a in aware)}"
                         f"{mark}.")
            for sel in aware:
                info = _selection_info(ok, sel)
                said = [f"{k} {v}" for k, v in info.items()
                        if k in ("target_labels", "warmup_rows", "target_auc", "effective_sample_size",
                                 "target_unseen_share")]
                secs = ok.loc[ok["selector"] == sel, "selection_seconds"].mean()
                if said or np.isfinite(secs):
                    lines.append(f"  - `{sel}`: {'; '.join(said + [f'selection {secs:.1f} s per run (mean)'])}.")
                lines += [f"    - **Warning**: {w}" for w in support_warnings(ok, sel)]
    return lines


def support_warnings(ok: pd.DataFrame, selector: str) -> list[str]:
    """One line per kind of warning in ``selector``'s selection infos (target_support): in how
    many of its trials' selections, at which fractions, and the first one's words."""
    from dataselect.selectors.target_support import collect_warnings

    if "selection_info" not in ok:
        return []
    rows = ok.loc[(ok["selector"] == selector) & ok["selection_info"].notna()]
    fractions = rows["fraction"] if "fraction" in rows else pd.Series(np.nan, index=rows.index)
    kinds: dict[str, tuple[str, list[float]]] = {}
    for frac, raw in zip(fractions, rows["selection_info"], strict=True):
        try:
            info = json.loads(raw)
        except (TypeError, ValueError):
            continue
        for text in collect_warnings(info):
            first, fracs = kinds.setdefault(text.split(":", 1)[0], (text, []))
            fracs.append(float(frac))
    out = []
    for first, fracs in kinds.values():
        where = ", ".join(f"{f * 100:g} %" for f in sorted({f for f in fracs if np.isfinite(f)}))
        out.append(f"{len(fracs)} of {len(rows)} selections{f' ({where})' if where else ''}; first: {first}")
    return out


def _selection_info(ok: pd.DataFrame, selector: str) -> dict[str, Any]:
    """The first finished trial's selection info of ``selector`` (numbers rounded)."""
    vals = ok.loc[ok["selector"] == selector, "selection_info"].dropna() if "selection_info" in ok else []
    if not len(vals):
        return {}
    info = json.loads(vals.iloc[0])
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in info.items()}


def primary_metric(meta: dict[str, Any]) -> str:
    """``report.metric`` of the study's config, ``auto`` resolved on the eval set's class counts."""
    from dataselect.core.config import ReportConfig

    cfg = ReportConfig.model_validate((meta.get("config") or {}).get("report") or {})
    return cfg.primary_metric((meta.get("dataset") or {}).get("eval_label_counts"))


def _why_metric(meta: dict[str, Any], metric: str) -> str:
    from dataselect.core.config import IMBALANCED

    chosen = ((meta.get("config") or {}).get("report") or {}).get("metric", "auto")
    if chosen != "auto":
        return ", set by `report.metric`"
    share = f"{IMBALANCED * 100:g} %"
    return (f"; auto: the eval set's largest class holds over {share}" if metric == "macro_f1"
            else f"; auto: no eval class holds over {share}")


def write_report(study_dir: str | Path) -> Path:
    """Write results, ``summary.csv``, ``kept.csv``, ``report.md`` and figures under ``<study_dir>/report``.

    The folder is built beside the old one and swapped in only when complete:
    a report that fails half-way leaves the previous report whole, never a
    new results.csv beside a stale report.md. Returns the path of ``report.md``.
    ``study_dir`` may be a study archive (:mod:`dataselect.report.archive`):
    its report files are then written beside the archive, each replaced only
    once the whole report is built.
    """
    study = Path(study_dir)
    if is_archive(study):
        return _write_archive_report(study)
    final = study / "report"
    work = study / f".report-new-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _write_report(study, work)
        old = study / f".report-old-{os.getpid()}"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        work.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = final / "report.md"
    log.info("report: %s", path)
    return path


REPORT_FILES = ("results.parquet", "results.csv", "summary.csv", "validation_summary.csv", "cost.csv",
                "kept.csv", "overlap.csv",
                "overlap.png", "headline.txt", "report.md", "forest.png", "efficiency.png", "cost.png")
"""Every file a report may write: an archive's folder holds other files too (its own, compare's)."""


def _write_archive_report(archive: Path) -> Path:
    """The report of a study archive, into the archive's folder (``reports/<study>/``)."""
    work = archive / f".report-new-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _write_report(archive, work)
        for name in REPORT_FILES:  # a file this report does not write is stale: removed
            if (work / name).is_file():
                os.replace(work / name, archive / name)
            else:
                (archive / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("report: %s", archive / "report.md")
    return archive / "report.md"


def _precision_text(ok: pd.DataFrame) -> str:
    """``, fp32 (every trial)`` or the count per precision when trials differ (none for probes)."""
    if "compute_dtype" not in ok or ok["compute_dtype"].isna().all():
        return ""
    counts = ok["compute_dtype"].dropna().value_counts()
    if len(counts) == 1:
        return f", {counts.index[0]} (every trial)"
    return ", precision " + ", ".join(f"{k} in {v} trials" for k, v in counts.items()) + " (mixed!)"


def _write_report(study: Path, out: Path) -> None:
    """Every report file of ``study``, written into the folder ``out``."""
    from dataselect.report.subsets import (
        composition_table,
        jaccard_matrix,
        overlap_flags,
        subsets_at,
    )

    meta_path = study / "study.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    label_names = (meta.get("dataset") or {}).get("label_names")
    reader = open_archive(study) if is_archive(study) else StudyFolder(study, meta)
    df = results_frame(reader.records(), label_names)
    df.to_parquet(out / "results.parquet", index=False)
    df.to_csv(out / "results.csv", index=False)

    cfg = meta.get("config") or {}
    trainer = cfg.get("trainer") or {}
    ds = meta.get("dataset") or {}
    n_ok = int((df["status"] == STATUS_OK).sum()) if not df.empty else 0
    n_err = int((df["status"] == "ERROR").sum()) if not df.empty else 0
    ok = df[df["status"] == STATUS_OK] if not df.empty else df
    trials = ok["trial"].tolist() if n_ok else []
    unreadable: dict[str, str] = {}
    preds = reader.frames(trials, "predictions.parquet", unreadable)
    kept = reader.frames(trials, "kept.parquet")
    names = label_names or [str(i) for i in range(2)]
    family = ((cfg.get("report") or {}).get("holm") or "fraction")
    summary = (summary_table(df, preds, max(len(names), 2), family) if n_ok
               else pd.DataFrame(columns=SUMMARY_COLUMNS))
    summary.to_csv(out / "summary.csv", index=False)
    metric = primary_metric(meta)
    mde = {f: p.mde for f, p in power_by_fraction(summary, metric, family).items()}
    cost = cost_table(df, meta, metric) if n_ok else pd.DataFrame()
    if len(cost):
        cost.to_csv(out / "cost.csv", index=False)
    figs = draw_figures(df, summary, out, metric, mde, cost) if n_ok else []

    noise = meta.get("label_noise")
    n_pool = ds.get("n_pool")
    comp = composition_table(ok, kept, names, n_pool=n_pool,
                             n_flipped_pool=noise.get("n_flipped") if noise else None,
                             target=reader.target_space() if meta.get("target") else None
                             ) if kept else pd.DataFrame()
    comp.to_csv(out / "kept.csv", index=False)
    mats, flags, overlap_seed = {}, [], {}
    for frac in sorted(set(ok["fraction"])) if n_ok else []:
        if frac == 1.0:
            continue
        subs, sd = subsets_at(ok, kept, frac)
        mats[frac] = jaccard_matrix(subs)
        overlap_seed[frac] = sd
        flags += [(frac, a, b, j) for a, b, j in overlap_flags(mats[frac])]
    if mats:
        pd.concat({f"{f:g}": m for f, m in mats.items() if not m.empty}, names=["fraction", "selector"]
                  ).to_csv(out / "overlap.csv")
    ov = overlap_figure(mats) if mats else None
    ov_fig = save_figure(ov, out / "overlap.png", dpi=100) if ov is not None else None

    seeds = (cfg.get("grid") or {}).get("seeds")
    # A selection that read the eval split's own texts is transductive: marked in every table.
    reads = (ok["reads_target"].fillna(False).astype(bool) if n_ok and "reads_target" in ok
             else pd.Series(False, index=ok.index))
    aware = sorted(set(ok.loc[reads, "selector"]))
    marks = {sel: " †" for sel in aware} if (meta.get("target") or {}).get("transductive") else {}
    mode = trainer.get("mode", "?")
    feats = meta.get("probe_features") or trainer.get("probe_features") or "embedding"
    how = (f"fine-tuned `{trainer.get('model')}`" if mode == "finetune"
           else f"`{trainer.get('probe')}` probe (C={trainer.get('probe_c')}) on frozen "
                f"`{(cfg.get('features') or {}).get('encoder')}` embeddings (`{feats}`"
                f"{', L2-normalised' if feats == 'embedding_norm' else ', raw mean-pooled'})")
    budgets = {float(f): int(b) for f, b in ok.groupby("fraction")["budget"].first().items()
               if pd.notna(b)} if n_ok else {}
    lines = [f"# Study `{meta.get('name', study.name)}`", ""]
    headline = conclusions(summary, budgets, metric, family) if n_ok else []
    if headline:
        lines += ["**Conclusion.**", "", *headline, ""]
        if "forest.png" in figs:
            lines += [f"![Δ {metric} vs random per selector, 95 % intervals](forest.png)", ""]
    (out / "headline.txt").write_text("\n".join([*headline, "", *top_rows(summary, metric)]) + "\n",
                                      encoding="utf-8")
    noise_line = (f"- Label noise: {noise['n_flipped']:,} pool labels flipped ({noise['kind']}, rate "
                  f"{noise['rate']:g}, seed {noise['seed']}) before features and selection; the eval "
                  "split is untouched." if noise else None)
    lines += confirm_lines(meta, df, summary, metric)  # a confirmatory study's rule and screen
    lines += [
        "## Setup", "",
        f"- Trainer: {how}{_precision_text(ok)}.",
        f"- Pool: {ds.get('n_pool', '?')} training rows from `{ds.get('source', '?')}`; "
        f"eval: {ds.get('n_eval', '?')} rows; classes {ds.get('label_names', '?')}.",
        *([noise_line] if noise_line else []),
        *_target_lines(meta.get("target"), meta.get("holdout"), ok, aware),
        f"- Seeds: {len(seeds) if seeds else '?'} ({seeds}); fractions {(cfg.get('grid') or {}).get('fractions')}.",
        f"- Trials: {len(df)} found of {meta.get('n_trials', '?')} expected; "
        f"{n_ok} finished, {n_err} failed, {len(df) - n_ok - n_err} incomplete; "
        f"{len(preds)} with per-row predictions.",
        *_model_lines(meta),
        "",
        "## Statistics", "",
        "Mean ± sample std (ddof=1) over seeds. Δ = mean over seed-matched pairs of (selector − "
        "`random` at the same fraction) on the whole eval set. Its 95 % interval and p take seeds "
        "*and* eval rows as noise (Dror et al., ACL 2018): the seed × row table of per-row "
        "differences (right minus right for accuracy; the metric's linearisation for macro-F1, "
        "precision and recall) gives Var(Δ) = σ²_row/n + σ²_seed/S + σ²_error/(nS) from the "
        "two-way random-effects mean squares, with a t interval on Satterthwaite's degrees of "
        "freedom (the bootstrap that resamples seeds and rows together counts the error term "
        "three times: Owen 2007). p (paired t) is the seed-paired t-test alone, which ignores "
        "eval-set noise. p (Holm) adjusts p over "
        + ("all selectors of one metric and fraction" if family == "fraction" else
           "every comparison of one metric in the study, both fractions together (`report.holm: study`)")
        + " (Holm 1979); **bold** Δ = Holm-adjusted p < 0.05. Seed-free selectors give the same subset for "
        "every seed, so their spread is the trainer's alone.",
        "",
        f"Power ({metric}, the primary metric{_why_metric(meta, metric)}):",
        "",
        *(power_lines(summary, metric, holm_family=family) or ["- n/a (no comparison with per-row predictions)"]),
        "",
        "## Results",
        "",
    ]
    if n_ok:
        for m in sorted(METRICS, key=lambda m: m != metric):  # the primary metric first
            lines += metric_table(summary, m, marks)
        lines += write_validation(out, reader, df, trials, max(len(names), 2), family, metric,
                                  (meta.get("holdout") or {}).get("validation_sentences"))
        lines += _kept_lines(comp, names, noise, n_pool, meta.get("target"), marks)
        if mats:
            seeds_used = set(overlap_seed.values())
            which = (f"seed {seeds_used.pop()}" if len(seeds_used) == 1 else "seed " + ", ".join(
                f"{s} at {f * 100:g} %" for f, s in overlap_seed.items()))
            lines += ["### Overlap between selectors' subsets", "",
                      f"Jaccard |A ∩ B| / |A ∪ B| of the row sets at each fraction ({which}); all pairs "
                      "in `overlap.csv`."]
            if flags:
                lines += ["", "Pairs whose subsets are identical or overlap > 90 %:", "",
                          "| fraction | selector A | selector B | Jaccard |", "|---|---|---|---|"]
                lines += [f"| {f:g} | {a} | {b} | {j:.3f}{' (identical)' if j == 1.0 else ''} |"
                          for f, a, b, j in flags]
            else:
                lines += ["", "No two selectors' subsets overlap by more than 90 %."]
            lines += ["", f"![{ov_fig}]({ov_fig})" if ov_fig else "", ""]
        lines += cost_lines(cost, metric)
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figs if f != "forest.png"] + [""]
        skew = ok[ok["missing_classes"].fillna("[]") != "[]"]
        if not skew.empty:
            lines += ["## Subsets missing a class", "",
                      "| trial | n_train | missing classes |", "|---|---|---|"]
            lines += [f"| {md_cell(r['trial'])} | {r['n_train']} | {md_cell(r['missing_classes'])} |"
                      for r in skew.to_dict("records")]
            lines.append("")
    else:
        lines += ["No finished trials.", ""]
    left_out = {**summary.attrs.get("left_out", {}), **unreadable}
    if left_out:
        lines += ["## Trials left out of the statistics", "",
                  f"{len(left_out)} finished trial(s) are in `results.csv` but in no interval, p-value "
                  "or Holm family (their seed is dropped from the pairs of their cell):", "",
                  "| trial | why |", "|---|---|"]
        lines += [f"| {md_cell(t)} | {md_cell(why)} |" for t, why in sorted(left_out.items())]
        lines.append("")
    odd = uneven_seeds(summary, seeds, metric)
    if odd:
        lines += ["## Comparisons on other seeds than the study's", "",
                  f"The study's seeds are {seeds}; these cells paired only the seeds listed (a trial "
                  "missing, failed or left out on either side):", "",
                  "| selector | fraction | seeds paired |", "|---|---|---|", *odd, ""]
    if n_err or len(df) > n_ok:
        lines += ["## Failed or incomplete trials", "", "| trial | status | error |", "|---|---|---|"]
        for r in df[df["status"] != STATUS_OK].to_dict("records"):
            lines.append(f"| {md_cell(r['trial'])} | {r['status']} | {md_cell(r['error'] or '')} |")
        lines.append("")
    board = (f"TensorBoard: `tensorboard --logdir {reader.tensorboard}`." if reader.tensorboard else
             "Written from the study's archive (`trials.parquet`); TensorBoard logs stayed with its runs.")
    lines += ["Files: `results.csv` (one row per trial), `summary.csv` (every comparison), `kept.csv`, "
              "`overlap.csv`, `headline.txt` (the conclusion and the largest Δ, as the console prints "
              f"them). {board}", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    # The console's conclusion (headline.txt, printed word for word) names them too.
    if extra := left_out_lines(df, left_out):
        with (out / "headline.txt").open("a", encoding="utf-8") as fh:
            fh.write("\n".join(["", *extra]) + "\n")
    log.info("report: %d trials, %d ok, %d failed", len(df), n_ok, n_err)


def left_out_lines(df: pd.DataFrame, left_out: dict[str, str]) -> list[str]:
    """Every trial in no interval, p-value or Holm family, and why: those that failed or did
    not finish, and the finished ones ``left_out`` names (``{trial: reason}``); [] when none."""
    why = dict(left_out)
    for r in (df[df["status"] != STATUS_OK].to_dict("records") if not df.empty else []):
        err = r.get("error") if isinstance(r.get("error"), str) else ""
        err = (err.strip().splitlines() or [""])[0][:200]
        state = "failed" if r["status"] == "ERROR" else "did not finish"
        why[str(r["trial"])] = f"{state}: {err}" if err else state
    if not why:
        return []
    return [f"Left out of the statistics: {len(why)} trial(s) (see report.md):",
            *(f"  {t}: {w}" for t, w in sorted(why.items()))]
