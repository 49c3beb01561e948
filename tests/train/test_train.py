"""finetune / probe on real SST-2 rows with the offline MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dataselect.core.config import TrainerConfig
from dataselect.core.errors import DataError
from dataselect.train import finetune, probe, train_batches

TINY = TrainerConfig(mode="finetune", model="minilm", learning_rate=5e-5, epochs=1.0,
                     batch_size=16, eval_batch_size=64, max_length=32, device="cpu")


def _scalars(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [e.value for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _hparams(logdir):
    """The HParams plugin's session_start_info of a run (what TensorBoard's HPARAMS tab shows)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams


def test_train_batches_cover_every_row_once_and_bucket():
    rng_lengths = np.random.default_rng(0).integers(1, 60, 1000)
    for bucket in (True, False):
        batches = train_batches(rng_lengths, 32, np.random.default_rng(1), bucket=bucket)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000))
    pad = {b: sum(rng_lengths[x].max() * len(x) for x in
                  train_batches(rng_lengths, 32, np.random.default_rng(1), bucket=b)) for b in (True, False)}
    assert pad[True] < 0.7 * pad[False]


def test_min_steps_trains_small_subsets_longer(sst2_train, sst2_eval):
    train, evalf = sst2_train.iloc[:16], sst2_eval.iloc[:8]
    more = finetune(train, evalf, TINY.model_copy(update={"min_steps": 5}), num_labels=2, seed=0,
                    progress=False)
    assert more["steps"] == 5  # 1 epoch of 16 rows at batch 16 would be 1 step
    assert finetune(train, evalf, TINY.model_copy(update={"min_steps": 0}), num_labels=2, seed=0,
                    progress=False)["steps"] == 1


def test_finetune_seeded_metrics_and_tensorboard(sst2_train, sst2_eval, tmp_path):
    train, evalf = sst2_train.iloc[:48], sst2_eval.iloc[:32]
    a = finetune(train, evalf, TINY, num_labels=2, seed=3, logdir=tmp_path / "tb", progress=False,
                 hparams={"selector": "random"})
    b = finetune(train, evalf, TINY, num_labels=2, seed=3, progress=False)
    assert a["train_loss"] == b["train_loss"] and a["accuracy"] == b["accuracy"]
    assert a["steps"] == 3 and a["n_train"] == 48 and a["n_eval"] == 32
    assert sum(a["class_counts"]) == 48 and a["missing_classes"] == []
    assert 0.0 <= a["accuracy"] <= 1.0 and a["device"] == "cpu"
    sc = _scalars(tmp_path / "tb")
    assert len(sc["train/loss"]) == 3
    assert sc["eval/accuracy"] == [pytest.approx(a["accuracy"])]
    assert sc["eval/macro_f1"] == [pytest.approx(a["macro_f1"])]
    # HParams plugin record present in the same run.
    hp = _hparams(tmp_path / "tb")
    assert hp["selector"].string_value == "random"
    assert hp["learning_rate"].number_value == pytest.approx(5e-5)
    assert hp["n_train"].number_value == 48


def test_finetune_subset_missing_a_class_does_not_crash(sst2_train, sst2_eval, tmp_path):
    pos = sst2_train[sst2_train["label"] == 1].iloc[:8]
    r = finetune(pos, sst2_eval.iloc[:32], TINY, num_labels=2, seed=0, progress=False,
                 save_dir=tmp_path / "model")
    assert r["missing_classes"] == [0] and r["class_counts"] == [0, 8]
    assert np.isfinite(r["macro_f1"])
    # The saved classifier predicts what the trained one scored.
    from dataselect.core.models import load_classifier, load_tokenizer
    from dataselect.train import predict
    from dataselect.train.metrics import classification_metrics

    model = load_classifier(str(tmp_path / "model"), 2, "cpu")
    pred = predict(model, load_tokenizer(str(tmp_path / "model")), sst2_eval["text"].tolist()[:32],
                   batch_size=8, max_length=TINY.max_length, device="cpu")
    assert classification_metrics(sst2_eval["label"].to_numpy()[:32], pred, 2) == {
        k: r[k] for k in ("accuracy", "macro_f1", "precision", "recall")}


def test_finetune_rejects_bad_labels(sst2_train, sst2_eval):
    bad = sst2_train.iloc[:4].assign(label=[0, 1, 2, 0])
    with pytest.raises(DataError, match="train_df.label"):
        finetune(bad, sst2_eval.iloc[:4], TINY, num_labels=2, seed=0, progress=False)


def _embed(texts):
    """Mean-pooled MiniLM embeddings: small direct code, independent of the feature stage."""
    import torch

    from dataselect.core.models import load_encoder, load_tokenizer

    tok, model = load_tokenizer("minilm"), load_encoder("minilm", device="cpu")
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            enc = tok(texts[i : i + 64], padding=True, truncation=True, max_length=64, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


@pytest.fixture(scope="module")
def embedded(sst2_train, sst2_eval):
    return _embed(sst2_train["text"].tolist()[:160]), _embed(sst2_eval["text"].tolist()[:200])


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_probe_learns_sentiment(embedded, sst2_train, sst2_eval, head, tmp_path):
    xtr, xev = embedded
    ytr, yev = sst2_train["label"].to_numpy()[:160], sst2_eval["label"].to_numpy()[:200]
    cfg = TrainerConfig(mode="probe", probe=head)
    r = probe(xtr, ytr, xev, yev, cfg, seed=0, num_labels=2, logdir=tmp_path)
    assert r["accuracy"] > 0.6  # majority class is ~0.5 on the dev split
    assert r["n_train"] == 160 and not r["degenerate"]
    r2 = probe(xtr, ytr, xev, yev, cfg, seed=0, num_labels=2)
    assert r2["accuracy"] == r["accuracy"]
    sc = _scalars(tmp_path)
    assert sc["eval/accuracy"] == [pytest.approx(r["accuracy"])]
    assert len(sc["train/loss"]) == r["steps"] >= 1


def test_probe_single_class_subset_is_degenerate_not_an_error(embedded, sst2_eval):
    xtr, xev = embedded
    yev = sst2_eval["label"].to_numpy()[:200]
    r = probe(xtr[:5], np.ones(5, int), xev, yev, TrainerConfig(mode="probe"), seed=0, num_labels=2)
    assert r["degenerate"] and r["missing_classes"] == [0]
    assert r["accuracy"] == pytest.approx(yev.mean())
    assert r["pred_counts"] == [0, 200]
