"""Property-based fuzzing of configs and small datasets (hypothesis).

Every mutated config and dataset must either pass ``parse_config`` +
``preflight`` (what a sweep runs before Ray) or raise the project's
:class:`~dataselect.core.errors.UserError`, which the CLI prints as ``error:``
lines with exit 2. Any other exception is a traceback for the user: a bug.
300 cases per test, and 3000/2000 more under ``-m slow``, all derandomized
so CI is repeatable; ``DATASELECT_FUZZ_EXPLORE=1`` makes the slow ones draw
fresh cases each run (``--hypothesis-seed=N`` then picks them) to hunt for new bugs.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataselect.core.errors import UserError
from dataselect.sweep.preflight import preflight
from dataselect.sweep.study import parse_study

_SETTINGS = dict(deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_EXPLORE = {"derandomize": not os.environ.get("DATASELECT_FUZZ_EXPLORE")}

ROWS = [("a fine film", 1), ("dull and long", 0), ("great cast", 1), ("weak plot", 0),
        ("lovely", 1), ("boring", 0), ("moving story", 1), ("a mess", 0)]


def _write_rows(folder: Path, rows: list[tuple[Any, Any]], *, fmt: str = "tsv", encoding: str = "utf-8",
                header: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        if fmt == "jsonl":
            body = "".join(json.dumps({"sentence": t, "label": y}) + "\n" for t, y in rows)
        else:
            sep = "\t" if fmt == "tsv" else ","
            body = (f"sentence{sep}label\n" if header else "") + "".join(f"{t}{sep}{y}\n" for t, y in rows)
        (folder / f"{split}.{fmt}").write_bytes(body.encode(encoding, errors="replace"))


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="ds-fuzz-") as d:
        base = Path(d)
        _write_rows(base / "data", ROWS)
        yield base


def _base(workdir: Path) -> dict[str, Any]:
    return {
        "name": "fuzz",
        "output_dir": str(workdir / "runs"),
        "dataset": {"source": str(workdir / "data"), "pool_size": 6, "eval_size": 4},
        "features": {"encoder": "minilm", "perplexity_model": "standin:qwen3", "text_metrics": True},
        "selectors": [{"name": "random"}, {"name": "kcenter", "params": {"metric": "cosine"}},
                      {"name": "perplexity", "params": {"q_low": 0.1, "q_high": 0.9}}],
        "grid": {"fractions": [0.25, 0.5], "seeds": [0, 1]},
        "trainer": {"mode": "finetune", "model": "minilm", "epochs": 1},
        "ray": {"num_cpus": 2, "cpus_per_trial": 1},
    }


# Values of every JSON/YAML type, including the awkward ones.
ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "minilm", "standin:qwen3", "standin:modernbert", "org/model", "/nonexistent",
                     "./missing", "~/nope", "cosine", "mean", "probe", "tsv", "0", "-1", "1e9", "nan"]),
    st.lists(st.one_of(st.integers(-3, 3), st.floats(-1, 2), st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(max_size=8), st.integers(-3, 3), max_size=3),
)

PATHS = [
    "name", "output_dir", "cache_dir",
    "dataset.source", "dataset.format", "dataset.label_names", "dataset.pool_size", "dataset.pool_seed",
    "dataset.eval_size", "dataset.text_column", "dataset.label_column", "dataset.header",
    "dataset.columns", "dataset.id_column", "dataset.train_split",
    "features.encoder", "features.pooling", "features.max_length", "features.batch_size",
    "features.perplexity_model", "features.mlm_model", "features.llm_judge", "features.judge_model",
    "features.consistency_variants", "features.consistency_alpha", "features.num_actors",
    "features.device", "features.text_metrics",
    "selectors", "selectors.0.name", "selectors.1.params", "selectors.1.label", "selectors.2.params",
    "grid.fractions", "grid.seeds", "grid.full_reference", "grid",
    "trainer.mode", "trainer.model", "trainer.learning_rate", "trainer.epochs", "trainer.batch_size",
    "trainer.max_length", "trainer.warmup_ratio", "trainer.probe",
    "ray.num_cpus", "ray.cpus_per_trial", "ray.temp_dir", "ray.max_trial_retries", "ray",
]

SELECTOR_PARAMS = {
    "kcenter": ["metric", "initial", "per_class"], "perplexity": ["q_low", "q_high", "within", "per_class"],
    "random": ["per_class"],
}

_DELETE = object()


def _set(raw: dict, path: str, value: Any) -> None:
    node: Any = raw
    parts = path.split(".")
    for p in parts[:-1]:
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                return  # an earlier mutation made this a list: the path no longer exists
            node = node[int(p)]
        else:
            node = node.setdefault(p, {})
        if not isinstance(node, (dict, list)):
            return
    last = parts[-1]
    if isinstance(node, list):
        if last.isdigit() and int(last) < len(node) and value is not _DELETE:
            node[int(last)] = value
    elif value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value


@st.composite
def mutated_configs(draw):
    muts = draw(st.lists(st.one_of(
        st.tuples(st.sampled_from(PATHS), ODD),
        st.tuples(st.sampled_from(PATHS), st.just(_DELETE)),
        st.tuples(st.sampled_from(["selectors.0.params", "selectors.1.params", "selectors.2.params"]),
                  st.dictionaries(st.sampled_from(["metric", "initial", "per_class", "q_low", "q_high",
                                                   "within", "bogus", "keep", "seed"]), ODD, max_size=3)),
        st.tuples(st.sampled_from(["typo", "dataset.typo", "grid.fraction"]), ODD),
    ), min_size=1, max_size=4))
    return muts


def _outcome(raw: Any) -> None:
    """Refused in clean ``error:`` lines, or accepted: then it round-trips through its own JSON
    form to an equal config and its study passes preflight."""
    try:
        cfg = parse_study(raw)
        preflight(cfg)
    except UserError as err:
        lines = str(err).split("\n")
        assert lines and all(ln.strip() and "\r" not in ln for ln in lines), repr(str(err))
        return
    assert parse_study(cfg.model_dump(mode="json")) == cfg


def _config_case(workdir: Path, muts) -> None:
    raw = _base(workdir)
    for path, value in muts:
        _set(raw, path, value if value is _DELETE else copy.deepcopy(value))
    _outcome(raw)


@settings(max_examples=300, **_SETTINGS)
@given(muts=mutated_configs())
def test_fuzz_config_mutations(workdir, muts):
    _config_case(workdir, muts)


@pytest.mark.slow
@settings(max_examples=3000, **{**_SETTINGS, **_EXPLORE})
@given(muts=mutated_configs())
def test_fuzz_config_mutations_long(workdir, muts):
    _config_case(workdir, muts)


TEXT = st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "nan", "NULL", "a\tb", 'say "hi"',
                                                         "x,y", "caf\u00e9", "\u00a0", "\U0001f600"]))
LABEL = st.one_of(st.sampled_from([0, 1, 2, -1, "0", "1", "pos", "neg", "", "1.0", None, 1.5]),
                  st.text(max_size=4))


@st.composite
def datasets(draw):
    rows = draw(st.lists(st.tuples(TEXT, LABEL), min_size=0, max_size=12))
    if draw(st.booleans()):
        rows = ROWS + rows
    return {
        "rows": rows,
        "fmt": draw(st.sampled_from(["tsv", "csv", "jsonl"])),
        "encoding": draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])),
        "header": draw(st.booleans()),
        "config": {
            "header": draw(st.booleans()),
            "label_names": draw(st.one_of(st.none(), st.just(["neg", "pos"]), st.just(["0", "1", "2"]))),
            "pool_size": draw(st.one_of(st.none(), st.integers(1, 30))),
            "eval_size": draw(st.one_of(st.none(), st.integers(1, 30))),
        },
    }


_case = [0]


def _data_case(workdir: Path, case: dict) -> None:
    _case[0] += 1
    folder = workdir / f"d{_case[0]}"
    _write_rows(folder, case["rows"], fmt=case["fmt"], encoding=case["encoding"], header=case["header"])
    raw = _base(workdir)
    raw["dataset"] = {"source": str(folder), **{k: v for k, v in case["config"].items() if v is not None}}
    _outcome(raw)


@settings(max_examples=300, **_SETTINGS)
@given(case=datasets())
def test_fuzz_datasets(workdir, case):
    _data_case(workdir, case)


@pytest.mark.slow
@settings(max_examples=2000, **{**_SETTINGS, **_EXPLORE})
@given(case=datasets())
def test_fuzz_datasets_long(workdir, case):
    _data_case(workdir, case)


def test_odd_floats_are_refused_not_crashing(workdir):
    for bad in (math.nan, math.inf, -0.0):
        raw = _base(workdir)
        raw["grid"]["fractions"] = [bad]
        with pytest.raises(UserError):
            parse_study(raw)


def test_found_by_fuzzing(workdir):
    # A negative pool_seed reached numpy's default_rng (ValueError); a key with a
    # line break split one error into two lines.
    raw = _base(workdir)
    raw["dataset"]["pool_seed"] = -1
    with pytest.raises(UserError, match=r"dataset.pool_seed: Input should be greater than or equal to 0"):
        parse_study(raw)
    raw = _base(workdir)
    raw["grid"]["seeds"] = [0, -2]
    with pytest.raises(UserError, match=r"grid.seeds\[1\]: -2 is negative"):
        parse_study(raw)
    raw = _base(workdir)
    raw["grid"]["\r\n"] = 0
    with pytest.raises(UserError) as info:
        parse_study(raw)
    assert str(info.value) == ("grid.\\r\\n: unknown key (check spelling; see the config reference in "
                               "README.md)")


# --------------------------------------------------------------------------- through the CLI
# The sweep command as a user runs it (YAML on disk, typer, preflight), stopped where
# Ray would start: every input ends in `error:` lines and exit 2 with nothing written,
# or passes every check. Data files are built field by field: ragged rows, empty and
# header-only files, byte-order marks, CRLF, other encodings, id columns with
# repeats and non-integers.

_WARNING = re.compile(r"^\d\d:\d\d:\d\d (WARNING|INFO) (dataselect|__main__)[\w.]*: ")
FIELD = st.one_of(TEXT, st.sampled_from(["1", "0", "pos", "neg", "7", "", "3.5", "x y"]))


@st.composite
def data_files(draw):
    """A data file and the dataset config that reads it, mostly near-valid (so the
    checks past the first one are reached too), sometimes broken in one way or several."""
    fmt = draw(st.sampled_from(["tsv", "csv", "jsonl", "parquet"]))
    with_id = draw(st.booleans())
    cols = ["sentence", "label", *(["id"] if with_id else [])]
    n = draw(st.integers(0, 10))
    ragged = draw(st.integers(0, 4)) == 0 and n > 0  # one row with a field missing or one too many
    rows = []
    for i in range(n):
        text, label = draw(st.one_of(st.just(ROWS[i % len(ROWS)]), st.tuples(TEXT, LABEL)))
        row = [text, label]
        if with_id:
            row.append(draw(st.one_of(st.just(i), st.just(i), st.integers(0, 3),
                                      st.sampled_from(["a", "1.5", "", None]))))
        rows.append(row)
    if ragged:
        i = draw(st.integers(0, n - 1))
        rows[i] = rows[i][:-1] if draw(st.booleans()) else [*rows[i], "extra"]
    header = draw(st.booleans())
    return {"fmt": fmt, "cols": cols, "rows": rows, "with_id": with_id, "header": header,
            "special": draw(st.sampled_from([None] * 10 + ["empty", "header_only", "bom", "crlf", "junk"])),
            "encoding": draw(st.sampled_from(["utf-8"] * 8 + ["latin-1", "utf-16"])),
            "config": {"header": draw(st.sampled_from([header] * 4 + [not header])),
                       "id_column": draw(st.sampled_from(["id", "id", "id", None, "missing"] if with_id
                                                         else [None, None, None, "id"])),
                       "label_names": draw(st.sampled_from([None] * 4 + [["neg", "pos"], ["0", "1"],
                                                                         ["a", "a"]]))}}


def _file_bytes(case: dict) -> bytes:
    cols, rows = case["cols"], case["rows"]
    if case["special"] == "empty":
        return b""
    if case["fmt"] == "jsonl":
        body = "".join(json.dumps(dict(zip(cols, r, strict=False))) + "\n" for r in rows)
    else:
        sep = "\t" if case["fmt"] == "tsv" else ","
        lines = ([sep.join(cols)] if case["header"] or case["special"] == "header_only" else [])
        if case["special"] != "header_only":
            lines += [sep.join("" if v is None else str(v) for v in r) for r in rows]
        body = "".join(ln + ("\r\n" if case["special"] == "crlf" else "\n") for ln in lines)
    data = body.encode(case["encoding"], errors="replace")
    if case["special"] == "bom":
        data = b"\xef\xbb\xbf" + data
    if case["special"] == "junk":
        data = data[: len(data) // 2] + b"\xff\xfe\x00\x9c" + data[len(data) // 2:]
    return data


def _write_parquet(path: Path, case: dict) -> None:
    import pandas as pd

    width = len(case["cols"])
    rows = [(list(r) + [None] * width)[:width] for r in case["rows"]]
    df = pd.DataFrame(rows, columns=case["cols"]).astype(object)
    if case["special"] == "empty":
        path.write_bytes(b"")
    elif case["special"] == "junk":
        path.write_bytes(b"PAR1 not parquet")
    else:
        df.astype(str).where(df.notna(), None).to_parquet(path, index=False)


def _cli_case(workdir: Path, raw: dict) -> None:
    import yaml
    from typer.testing import CliRunner

    import dataselect.sweep.run as sweep_mod
    from dataselect.cli import app

    _case[0] += 1
    out = workdir / f"out{_case[0]}"
    raw = copy.deepcopy(raw)
    if isinstance(raw, dict):
        raw["output_dir"] = str(out)
    path = workdir / f"cfg{_case[0]}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True) if isinstance(raw, dict) else str(raw))
    reached: list[Path] = []

    def start(cfg, ds, study, **kw):  # where the real sweep would start Ray
        reached.append(study)
        return study / "report" / "report.md"

    original = sweep_mod._sweep
    sweep_mod._sweep = start
    try:
        res = CliRunner().invoke(app, ["sweep", str(path)])
    finally:
        sweep_mod._sweep = original
    text = res.stdout + res.stderr
    assert "Traceback" not in text, text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if reached:
        assert res.exit_code == 0 and "report:" in res.stdout
        return
    assert res.exit_code == 2, (res.exit_code, text)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert errors and all(ln.startswith("error: ") or _WARNING.match(ln) for ln in lines), lines
    assert not out.exists() or not any(out.iterdir()), "a refused sweep wrote into output_dir"


def _data_cli_case(workdir: Path, case: dict) -> None:
    _case[0] += 1
    folder = workdir / f"f{_case[0]}"
    folder.mkdir()
    for split in ("train", "validation"):
        target = folder / f"{split}.{case['fmt']}"
        if case["fmt"] == "parquet":
            _write_parquet(target, case)
        else:
            target.write_bytes(_file_bytes(case))
    raw = _base(workdir)
    raw["dataset"] = {"source": str(folder), **{k: v for k, v in case["config"].items() if v is not None}}
    if raw["dataset"].get("header") is False and case["fmt"] in ("tsv", "csv"):
        raw["dataset"]["columns"] = case["cols"]
    _cli_case(workdir, raw)


@settings(max_examples=150, **_SETTINGS)
@given(muts=mutated_configs())
def test_fuzz_config_through_the_cli(workdir, muts):
    raw = _base(workdir)
    for path, value in muts:
        _set(raw, path, value if value is _DELETE else copy.deepcopy(value))
    _cli_case(workdir, raw)


@settings(max_examples=200, **_SETTINGS)
@given(case=data_files())
def test_fuzz_data_files_through_the_cli(workdir, case):
    _data_cli_case(workdir, case)


@pytest.mark.slow
@settings(max_examples=1500, **{**_SETTINGS, **_EXPLORE})
@given(case=data_files())
def test_fuzz_data_files_through_the_cli_long(workdir, case):
    _data_cli_case(workdir, case)


def test_cli_refuses_a_non_mapping_and_unreadable_yaml(workdir):
    for raw in ("- just\n- a list\n", "key: [unclosed\n", "\x00\x01binary"):
        _cli_case(workdir, raw)
