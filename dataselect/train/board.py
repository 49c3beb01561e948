"""Per-trial TensorBoard run: training scalars, eval scalars, class shares and HParams."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.train.metrics import class_tags

__all__ = ["Board"]


class Board:
    """TensorBoard writer that is a no-op without a logdir."""

    def __init__(self, logdir: str | Path | None):
        self.writer = None
        if logdir is not None:
            from torch.utils.tensorboard import SummaryWriter

            Path(logdir).mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(logdir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def finish(self, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int,
               class_counts: Sequence[int] = (), label_names: Sequence[str] | None = None) -> None:
        """Eval scalars, the subset's class shares and the HParams record, in the run's own event file.

        Class shares are ``subset/class_share/<tag>``, tags from
        :func:`~dataselect.train.metrics.class_tags` (the names themselves are in the
        ``label_names`` hparam). ``SummaryWriter.add_hparams`` would write to a
        new sub-run per call; writing the three hparams summaries here keeps
        one run per trial.
        """
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hp_summary

        names = list(label_names) if label_names is not None else [str(k) for k in range(len(class_counts))]
        clean = {k: _hp_value(v) for k, v in hparams.items()}
        if names:
            clean["label_names"] = json.dumps(names, ensure_ascii=False)
        n = sum(class_counts)
        for tag, count in zip(class_tags(names), class_counts, strict=False):
            self.writer.add_scalar(f"subset/class_share/{tag}", count / n if n else float("nan"), step)
        tagged = {f"eval/{k}": float(v) for k, v in metrics.items()}
        exp, ssi, sei = hp_summary(clean, tagged)
        fw = self.writer._get_file_writer()
        for s in (exp, ssi, sei):
            fw.add_summary(s)
        for k, v in tagged.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()
        self.writer.close()


def _hp_value(v: Any) -> bool | int | float | str:
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, np.generic):
        return v.item()
    return str(v)
