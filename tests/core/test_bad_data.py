"""Bad data files: one DataError line naming file, row and column; nothing written.

Each case writes a small TSV/CSV the way a user's export would look and
checks the message a user would need to fix it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dataselect.core.config import DatasetConfig
from dataselect.core.data import MAX_TEXT_CHARS, find_duplicates, load_dataset
from dataselect.core.errors import DataError

REPO = Path(__file__).resolve().parents[2]

ROWS = [("a fine film", "1"), ("dull and long", "0"), ("great cast", "1"), ("weak plot", "0")]


def _tsv(folder: Path, rows=ROWS, *, header: bool = True, name: str = "train.tsv",
         extra: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = (["sentence\tlabel"] if header else []) + [f"{t}\t{y}" for t, y in rows]
    p = folder / name
    p.write_bytes(("\n".join(lines) + "\n").encode() + extra)
    return p


def _both(folder: Path, rows=ROWS, eval_rows=None, **kw) -> DatasetConfig:
    _tsv(folder, rows, **kw)
    _tsv(folder, eval_rows or rows, name="validation.tsv", **kw)
    return DatasetConfig(source=str(folder))


def test_headerless_tsv_is_detected_and_header_false_reads_it(tmp_path):
    cfg = _both(tmp_path, header=False)
    with pytest.raises(DataError, match=r"^dataset.text_column: column 'sentence' not in train.tsv.*"
                                        r"first row looks like data.*set dataset.header: false"):
        load_dataset(cfg)
    ds = load_dataset(cfg.model_copy(update={"header": False}))
    assert ds.train["text"].tolist() == [t for t, _ in ROWS]
    assert ds.train["label"].tolist() == [1, 0, 1, 0]
    assert ds.train["id"].tolist() == [0, 1, 2, 3]


def test_headerless_csv_with_named_columns(tmp_path):
    for split in ("train", "validation"):
        pd.DataFrame({"i": [10, 11, 12, 13], "t": [t for t, _ in ROWS], "y": [y for _, y in ROWS]}).to_csv(
            tmp_path / f"{split}.csv", index=False, header=False)
    cfg = DatasetConfig(source=str(tmp_path), text_column="t", label_column="y")
    with pytest.raises(DataError, match="first row looks like data"):
        load_dataset(cfg)
    with pytest.raises(DataError, match=r"dataset.columns: train.csv line 1 has 3 fields"):
        load_dataset(cfg.model_copy(update={"header": False}))
    ok = cfg.model_copy(update={"header": False, "columns": ["i", "t", "y"], "id_column": "i"})
    assert load_dataset(ok).train["id"].tolist() == [10, 11, 12, 13]


def test_a_real_header_is_not_called_data(tmp_path):
    cfg = _both(tmp_path).model_copy(update={"text_column": "text"})
    with pytest.raises(DataError) as info:
        load_dataset(cfg)
    assert "looks like data" not in str(info.value)


def test_non_utf8_names_line_and_column(tmp_path):
    rows = [*ROWS[:2], ("caf\udce9 scene", "1"), *ROWS[3:]]
    folder = tmp_path / "d"
    folder.mkdir()
    text = "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows)
    (folder / "train.tsv").write_bytes(text.encode("utf-8", "surrogateescape"))
    _tsv(folder, name="validation.tsv")
    with pytest.raises(DataError, match=r"^dataset.train_split: train.tsv line 4 \(row 2\), column "
                                        r"'sentence': byte 0xe9 is not UTF-8"):
        load_dataset(DatasetConfig(source=str(folder)))


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    cfg = _both(tmp_path)
    p = tmp_path / "train.tsv"
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    assert len(load_dataset(cfg).train) == 4


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_names_file_line_and_column(tmp_path, text):
    rows = [*ROWS[:2], (text, "1"), *ROWS[3:]]
    with pytest.raises(DataError, match=r"dataset.train: empty text in column 'sentence' at row 2 "
                                        r"\(train.tsv line 4; 1 empty rows\)"):
        load_dataset(_both(tmp_path, rows))


def test_nan_text_in_jsonl_names_line(tmp_path):
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text(
            '{"sentence": "good", "label": 1}\n{"sentence": null, "label": 0}\n{"sentence": "bad", "label": 0}\n')
    with pytest.raises(DataError, match=r"empty text .* at row 1 \(train.jsonl line 2;"):
        load_dataset(DatasetConfig(source=str(tmp_path)))


def test_eval_label_that_train_lacks(tmp_path):
    cfg = _both(tmp_path, eval_rows=[*ROWS[:3], ("odd one", "2")])
    with pytest.raises(DataError, match=r"dataset.eval: label '2' in column 'label' is not a known class: it "
                                        r"does not occur in the train split \(validation.tsv line 5 \(row 3\)"):
        load_dataset(cfg)


def test_label_outside_label_names(tmp_path):
    rows = [(t, {"1": "pos", "0": "neg"}[y]) for t, y in ROWS] + [("so so", "meh")]
    cfg = _both(tmp_path, rows).model_copy(update={"label_names": ["neg", "pos"]})
    with pytest.raises(DataError, match=r"label 'meh' .* it is not in dataset.label_names \(train.tsv line 6"):
        load_dataset(cfg)


def test_single_class_names_file(tmp_path):
    rows = [(t, "1") for t, _ in ROWS]
    with pytest.raises(DataError, match=r"dataset.train: need at least 2 classes; got \['1'\] in train.tsv"):
        load_dataset(_both(tmp_path, rows))


def test_duplicate_ids(tmp_path):
    for split in ("train", "validation"):
        pd.DataFrame({"id": [1, 2, 2, 3], "sentence": [t for t, _ in ROWS],
                      "label": [y for _, y in ROWS]}).to_csv(tmp_path / f"{split}.csv", index=False)
    cfg = DatasetConfig(source=str(tmp_path), id_column="id")
    with pytest.raises(DataError, match=r"dataset.id_column: train.csv line 4 \(row 2\), column 'id': id 2 "
                                        r"repeats row 1"):
        load_dataset(cfg)


def test_ten_megabyte_text_is_cut_with_a_warning(tmp_path, caplog):
    huge = "good " * (10 * 1024 * 1024 // 5)
    cfg = _both(tmp_path, [*ROWS, (huge, "1")])
    with caplog.at_level(logging.WARNING, logger="dataselect.core.data"):
        ds = load_dataset(cfg)
    assert ds.train["text"].str.len().max() == MAX_TEXT_CHARS
    assert any("longer than" in r.message and "train.tsv line 6" in r.message for r in caplog.records)


def test_duplicate_counts_describe_the_pool(sst2_dir):
    ds = load_dataset(DatasetConfig(source=str(sst2_dir), pool_size=800, pool_seed=0))
    assert len(ds.train) == 800
    assert ds.duplicates == find_duplicates(ds.train)
    assert ds.duplicates.n_repeated_rows < 371  # 371 is the whole 67,349-row file's count


def test_prepare_cli_one_line_and_nothing_written(tmp_path):
    data = tmp_path / "data"
    _both(data, header=False)
    raw = {"name": "x", "output_dir": str(tmp_path / "runs"), "dataset": {"source": str(data)},
           "features": {"encoder": "minilm", "perplexity_model": None}, "selectors": [{"name": "random"}],
           "grid": {"fractions": [0.5]}, "trainer": {"model": "minilm"}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "dataselect.sweep", str(p)], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "dataset.header: false" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_a_hub_loading_error_keeps_its_cause(monkeypatch):
    """The one line says what went wrong (type and message), and the exception chain keeps it."""
    import datasets

    from dataselect.core.config import DatasetConfig
    from dataselect.core.data import load_dataset
    from dataselect.core.errors import DataError

    cause = ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)")

    def refuse(*a, **k):
        raise cause

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(DataError) as info:
        load_dataset(DatasetConfig(source="glue/sst2"))
    msg = str(info.value)
    assert "ConnectionError: Couldn't reach 'glue' on the Hub" in msg and "\n" not in msg
    assert info.value.__cause__ is cause


@pytest.mark.parametrize(("body", "what"), [("sentence\tlabel\n", "only a header row"), ("", "cannot read")])
def test_a_header_only_or_empty_split_is_one_line(tmp_path, body, what):
    from dataselect.core.data import load_dataset
    from dataselect.core.errors import DataError

    (tmp_path / "train.tsv").write_text(body)
    (tmp_path / "validation.tsv").write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match=f"dataset.train_split: .*{what}"):
        load_dataset(DatasetConfig(source=str(tmp_path)))
