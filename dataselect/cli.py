"""The command line: one app, one command per stage, each usable alone with the same config.

``prepare → standin → features → select → train/eval → report``, and
``sweep`` running all of them through Ray Tune. ``python -m dataselect
COMMAND ...`` and ``python -m dataselect.sweep ...`` are the same app;
the latter runs ``sweep`` when its first word is not a command, so
``python -m dataselect.sweep CONFIG`` is the main job. Errors a user can fix
print one line each (``error: field: problem``) and exit with code 2; a
stage or report that fails exits 1, a sweep whose trials partly failed 3
(:mod:`dataselect.core.errors`).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dataselect.core.errors import UserError, error_lines
from dataselect.sweep.console import setup_logging

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="dataselect",
    help="Training-data subset selection for text classifiers: features, selectors, sweeps, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="Study config YAML (see experiments/).")]


def user_errors(fn: F) -> F:
    """Turn :class:`UserError` into ``error: …`` on stderr and its exit code (2 for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            for line in error_lines(err):
                typer.echo(line, err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _load(config: Path, preflight: str | None = None):  # -> StudyConfig, lazily imported
    """Validate the config; with ``preflight`` also data, models and output_dir (no Ray yet)."""
    from dataselect.sweep.study import load_study

    cfg = load_study(config)
    if preflight is not None:
        from dataselect.sweep.preflight import preflight as check

        check(cfg, stage=preflight)
    return cfg


@app.command()
@user_errors
def prepare(config: ConfigArg) -> None:
    """Load and validate the dataset; print sizes, label counts and duplicates."""
    from dataselect.core.data import load_dataset

    setup_logging()
    cfg = _load(config)
    ds = load_dataset(cfg.dataset, cfg.target)
    summary = {
        "source": ds.source,
        "train_rows": len(ds.train),
        "eval_rows": len(ds.eval),
        "labels": ds.label_names,
        "train_label_counts": ds.train["label"].value_counts().sort_index().tolist(),
        "eval_label_counts": ds.eval["label"].value_counts().sort_index().tolist(),
        "repeated_rows": ds.duplicates.n_repeated_rows,
        "conflicting_texts": ds.duplicates.n_conflicting_texts,
        "fingerprint": ds.fingerprint,
    }
    if ds.noise is not None:
        summary["label_noise_flipped"] = len(ds.noise)
    if ds.holdout is not None:
        summary["holdout"] = ds.holdout
    if ds.target is not None:
        summary["target"] = ds.target.describe()
    typer.echo(json.dumps(summary, indent=2))


@app.command()
@user_errors
def features(config: ConfigArg) -> None:
    """Compute (or reuse) the cached feature shards of the train pool and eval split."""
    from dataselect.features.table_ref import TableRef
    from dataselect.sweep.stages import study_features

    setup_logging()
    cfg = _load(config, preflight="features")
    train, evalf = study_features(cfg, columns=())  # computed and cached; not held here
    stored = TableRef(cfg.cache_root / "features", train.fingerprint).columns()
    typer.echo(f"train pool: {len(train['id'])} rows, features {sorted(stored)}")
    typer.echo(f"eval: {len(evalf['id'])} rows")


@app.command()
@user_errors
def select(config: ConfigArg) -> None:
    """Run every selector × fraction × seed once (Ray tasks) and write manifests."""
    from dataselect.sweep.stages import study_selections

    setup_logging()
    cfg = _load(config, preflight="features")
    for key, path in study_selections(cfg).items():
        typer.echo(f"{key}: {path}")


@app.command()
@user_errors
def train(
    config: ConfigArg,
    selector: Annotated[str, typer.Option(help="Selector label from the config.")] = "random",
    fraction: Annotated[float, typer.Option(help="Budget fraction from the grid.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed from the grid.")] = 0,
    save: Annotated[Path | None, typer.Option(help="Folder to save the trained classifier.")] = None,
) -> None:
    """Train one classifier on one selection and print its eval metrics."""
    from dataselect.sweep.stages import train_one

    setup_logging()
    cfg = _load(config, preflight="sweep")
    from dataselect.train import PREDICTIONS_KEY

    metrics = train_one(cfg, selector, fraction, seed, save_dir=save)
    metrics.pop(PREDICTIONS_KEY, None)
    typer.echo(json.dumps(metrics, indent=2, default=str))


@app.command("eval")
@user_errors
def eval_(
    config: ConfigArg,
    model: Annotated[Path, typer.Option(help="Classifier folder saved by `train --save`.")],
) -> None:
    """Evaluate a saved classifier on the config's eval split."""
    from dataselect.sweep.stages import evaluate_saved

    setup_logging()
    cfg = _load(config)
    typer.echo(json.dumps(evaluate_saved(cfg, model), indent=2, default=str))


@app.command()
@user_errors
def sweep(
    config: ConfigArg,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted sweep; finished trials are kept.")] = False,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (else config ray.address, "
                                                     "else RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Features → selections → Tune trials → report, the whole grid; ends with the conclusion.

    Exit code 3 when some trials failed (the report covers the others).
    """
    from dataselect.core.errors import TrialsFailedError
    from dataselect.sweep.console import closing_lines, failed_trials
    from dataselect.sweep.run import run_sweep

    setup_logging()
    cfg = _load(config)
    out = run_sweep(cfg, resume=resume, address=address)
    for line in closing_lines(out):
        typer.echo(line)
    if failed := failed_trials(out):
        study = out.parent.parent
        raise TrialsFailedError(
            f"{len(failed)} trial(s) failed ({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}; "
            f"why: above and in {out}; tracebacks in {study / 'trials'}/<trial>/error.txt); the report "
            "covers the others; rerun with --resume to run the failed ones again")


@app.command()
@user_errors
def plan(config: ConfigArg) -> None:
    """Trials, cached and missing features, predicted time, detectable effect: before anything runs."""
    from dataselect.sweep.plan import make_plan
    from dataselect.sweep.preflight import preflight

    setup_logging()
    cfg = _load(config)
    ds = preflight(cfg)
    for line in make_plan(cfg, ds).lines():
        typer.echo(line)


@app.command()
@user_errors
def report(
    study_dir: Annotated[Path, typer.Argument(help="A study folder (<output_dir>/<name>), its archive "
                                                   "(reports/<name>) or its config YAML.")],
) -> None:
    """(Re)write results.csv/parquet, report.md and figures from the Tune results, or from an archive."""
    from dataselect.core.errors import StageError, first_line, log_traceback
    from dataselect.report import write_report
    from dataselect.sweep.console import closing_lines, log_file

    setup_logging()
    study_dir = _study_folder(study_dir)
    with log_file(study_dir, "report") as logfile:
        try:
            path = write_report(study_dir)
        except UserError:
            raise
        except Exception as err:
            log_traceback("report failed")
            raise StageError(f"report: {first_line(err)[:300]}; traceback in {logfile}; the study's "
                             "results are untouched") from err
    for line in closing_lines(path):
        typer.echo(line)


def _study_folder(path: Path, *, archive_ok: bool = True) -> Path:
    """The folder a study command reads: ``path`` itself, or for a config YAML its study
    folder (``output_dir/name``), else (``archive_ok``) its archive."""
    from dataselect.report.archive import is_archive

    if path.is_dir():
        return path
    if not path.is_file():
        raise UserError(f"study_dir: no such study folder or config: {path}")
    cfg = _load(path)
    if (cfg.study_dir / "study.json").is_file():
        return cfg.study_dir
    if archive_ok and cfg.archive_dir is not None and is_archive(cfg.archive_dir):
        return cfg.archive_dir
    raise UserError(f"study_dir: {path}: the study has not run here ({cfg.study_dir} has no study.json)"
                    + (f" and {cfg.archive_dir} holds no archive" if archive_ok and cfg.archive_dir else ""))


@app.command()
@user_errors
def archive(
    study_dir: Annotated[Path, typer.Argument(help="A study folder (<output_dir>/<name>) or its config YAML.")],
    out: Annotated[Path | None, typer.Option(help="Archive folder (default: reports/<name>).")] = None,
    report: Annotated[bool, typer.Option(help="Also write the report from the archive, beside it.")] = True,
) -> None:
    """Keep a study in committed form: trials.parquet (per trial its config, result, kept ids,
    eval predictions) and study.json; `report` and `--resume` read it where runs/ is gone."""
    from dataselect.report.archive import FILES, INDEX_FILE, Archive, is_archive, write_archive
    from dataselect.sweep.trial import adoption_keys

    setup_logging()
    study = _study_folder(study_dir, archive_ok=False)
    if is_archive(study):
        raise UserError(f"study_dir: {study} is an archive already; archive the study folder it came from")
    if not (study / "study.json").is_file():
        raise UserError(f"study_dir: {study} has no study.json; is it a study folder (runs/<name>)?")
    name = json.loads((study / "study.json").read_text()).get("name") or study.name
    dest = write_archive(study, out or Path("reports") / name, keys=adoption_keys(study))
    Archive(dest)  # reads back whole, every file checked
    size = sum((dest / f).stat().st_size for f in (INDEX_FILE, *FILES))
    index = json.loads((dest / INDEX_FILE).read_text())
    typer.echo(f"archive: {dest} ({index['trials']} trials, {index['finished']} finished, "
               f"{index['adoptable']} adoptable by a sweep; {size / 1e6:.1f} MB)")
    if report:
        from dataselect.report import write_report
        from dataselect.sweep.console import closing_lines

        for line in closing_lines(write_report(dest)):
            typer.echo(line)


@app.command()
@user_errors
def standin(config: ConfigArg) -> None:
    """Train the offline stand-in LMs the config names (``standin:qwen3`` / ``standin:modernbert``)."""
    from dataselect.sweep.stages import build_standins

    setup_logging()
    cfg = _load(config)
    for ref, path in build_standins(cfg).items():
        typer.echo(f"{ref}: {path}")


@app.command()
@user_errors
def compare(
    first: Annotated[Path, typer.Argument(help="A study folder with a report (e.g. runs/families_probe).")],
    second: Annotated[Path, typer.Argument(help="Another study of the same arms (e.g. runs/families).")],
    metric: Annotated[str, typer.Option(help="Metric of summary.csv to compare.")] = "accuracy",
    out: Annotated[Path | None, typer.Option(help="Write the markdown here (else stdout).")] = None,
) -> None:
    """Two studies' verdicts vs random side by side, selector by selector: where they disagree."""
    from dataselect.report.compare import compare_lines, compare_summaries, load_summary

    table = compare_summaries(load_summary(first), load_summary(second), metric)
    if table.empty:
        raise UserError(f"{first}, {second}: no selector × fraction with {metric!r} in both summaries")
    text = "\n".join(compare_lines(table, first.name, second.name, metric))
    if out is None:
        typer.echo(text)
    else:
        from dataselect.features.store import atomic_write_bytes

        atomic_write_bytes(out, text.encode())
        atomic_write_bytes(out.with_suffix(".csv"), table.to_csv(index=False).encode())
        typer.echo(f"compare: {out} ({int((~table['agree']).sum())} of {len(table)} verdicts differ)")


def main(argv: list[str] | None = None, *, default: str | None = None) -> None:
    """Console entry point (``dataselect`` / ``python -m dataselect``).

    ``default`` names the command that runs when the first word is not one
    (``python -m dataselect.sweep CONFIG`` and ``... --help`` are ``sweep``'s).
    """
    args = list(argv if argv is not None else sys.argv[1:])
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    if default is not None and (not args or args[0] not in commands):
        args = [default, *args]
    app(args=args, prog_name="dataselect")
