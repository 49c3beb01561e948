"""Feature-test fixtures: real SST-2 rows, tiny random stand-in LMs, one Ray."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def sst2_train(sst2_dir: Path) -> pd.DataFrame:
    """First 2000 SST-2 train rows as ``id, text, label`` (id = GLUE row index)."""
    df = pd.read_csv(sst2_dir / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE, nrows=2000,
                     keep_default_na=False, dtype={"sentence": str})
    return pd.DataFrame({"id": range(len(df)), "text": df["sentence"], "label": df["label"]}).astype(
        {"id": "int64", "label": "int64"})


@pytest.fixture(scope="session")
def sample(sst2_train: pd.DataFrame) -> pd.DataFrame:
    """200 rows spread over the first 2000 (mixed lengths, 1-word phrases included)."""
    return sst2_train.iloc[::10].reset_index(drop=True)


def _tiny_lm(factory: pytest.TempPathFactory, texts: list[str], kind: str) -> str:
    from dataselect.core.standin import build_tiny_lm, train_tokenizer

    out = factory.mktemp(f"tiny-{kind}")
    tok = train_tokenizer(texts, vocab_size=512, kind=kind)
    build_tiny_lm(tok, out, kind=kind, hidden_size=32, num_layers=2, seed=0)
    return str(out)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory, sst2_train: pd.DataFrame) -> str:
    """A random 2-layer, 32-wide Qwen3ForCausalLM with a BPE tokenizer trained on SST-2."""
    return _tiny_lm(tmp_path_factory, sst2_train["text"].tolist(), "qwen3")


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory, sst2_train: pd.DataFrame) -> str:
    """A random 2-layer, 32-wide ModernBertForMaskedLM with its BPE tokenizer."""
    return _tiny_lm(tmp_path_factory, sst2_train["text"].tolist(), "modernbert")


@pytest.fixture(scope="session")
def minilm():
    """The offline pretrained MiniLM encoder and tokenizer (loaded once per session)."""
    from dataselect.core.models import load_encoder, load_tokenizer

    return load_tokenizer("minilm"), load_encoder("minilm", "cpu")


@pytest.fixture(scope="session")
def features_ray(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray (2 CPUs, own temp dir) shared by the Ray Data tests."""
    import ray

    from dataselect.core.config import RayConfig
    from dataselect.sweep.ray_runtime import init_ray

    # Short path: Ray's unix sockets live under it (107-byte limit).
    init_ray(RayConfig(num_cpus=2, temp_dir=str(tmp_path_factory.mktemp("ray"))))
    yield
    ray.shutdown()
