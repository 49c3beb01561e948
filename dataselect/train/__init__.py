"""Turning a selected subset into a classifier, and scoring it on the eval split.

:func:`finetune` (:mod:`~dataselect.train.trainer`) fine-tunes a sequence
classifier; :func:`probe` (:mod:`~dataselect.train.probe`) fits a head on
cached embeddings; both return the metrics of :mod:`~dataselect.train.metrics`
and log to TensorBoard (:mod:`~dataselect.train.board`).
"""

from dataselect.train.probe import probe
from dataselect.train.trainer import (
    PREDICTIONS_KEY,
    VALIDATION_KEY,
    VALIDATION_PREFIX,
    EvalPredictions,
    finetune,
    predict,
    seed_everything,
    train_batches,
)

__all__ = ["PREDICTIONS_KEY", "VALIDATION_KEY", "VALIDATION_PREFIX", "EvalPredictions", "finetune", "predict", "probe", "seed_everything",
           "train_batches"]
