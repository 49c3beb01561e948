"""``grand``: gradient norm at initialisation (Paul et al., NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.func import grad, vmap

from dataselect.selectors.base import check, is_int
from dataselect.selectors.dynamics import (
    Params,
    head_logits,
    init_head,
    torch_single_thread,
)
from dataselect.selectors.importance import GRAD_CHUNK, HeadScores
from dataselect.selectors.memo import memoized
from dataselect.selectors.registry import register

__all__ = ["GraNd", "grand_scores"]


@register("grand")
@dataclass(frozen=True)
class GraNd(HeadScores):
    """GraNd: expected per-example gradient norm of the loss [1]_.

    ``score_i = mean_r || grad_theta CE(f_theta_r(x_i), y_i) ||_2`` over
    ``n_inits`` random initialisations ``theta_r`` of the head, at
    initialisation (``epochs=0``, the paper's "GraNd at init") or after
    ``epochs`` of training. The gradient norm bounds how much a row can
    change the loss of the others in one step, so large-score rows are the
    ones that drive early learning; keeping them prunes what the model would
    learn anyway.

    Parameters
    ----------
    hidden : int, default=128
        Width of the head's ReLU hidden layer; 0 gives a linear softmax head,
        whose GraNd at init is ``||softmax - onehot|| * sqrt(||x||^2 + 1)``,
        nearly a function of the row norm (use ``hidden > 0``).
    n_inits : int, default=5
        Initialisations averaged (the paper uses 10).
    epochs : int, default=0
        Adam epochs before the gradient is taken (0: at initialisation).
    batch_size, lr : int, float, default=256, 1e-3
        Training minibatch and Adam step, used only when ``epochs > 0``.
    keep : {"highest", "lowest"}, default="highest"

    Notes
    -----
    Per-sample gradients are computed in chunks of rows with
    ``torch.func.vmap(torch.func.grad(loss))``, one batched call per chunk,
    not a Python loop per row. Embeddings are standardised per dimension
    first. Only the head's parameters are differentiated: the paper's
    gradient over the whole network (or "optionally the last encoder
    layer") is left out, the encoder is frozen. Ties go to the lower row.

    References
    ----------
    .. [1] M. Paul, S. Ganguli, G. K. Dziugaite, "Deep Learning on a Data
       Diet: Finding Important Examples Early in Training", NeurIPS 2021.
    """

    epochs: int = 0
    n_inits: int = 5

    _min_epochs: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check("GraNd", "n_inits", self.n_inits, is_int(self.n_inits) and self.n_inits >= 1,
              "an int >= 1")

    def pool_scores(
        self, features: dict[str, np.ndarray], n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        seeds = rng.integers(0, 2**63 - 1, size=self.n_inits).tolist()

        def compute() -> np.ndarray:
            x, y, k = self._prepare(features)
            with torch_single_thread():
                heads = [init_head(x.shape[1], k, self.hidden, s) if self.epochs == 0
                         else self._train(x, y, k, s) for s in seeds]
                return grand_scores(heads, x, y)

        scores = memoized("grand", (features["embedding"], features["label"]),
                          (seeds, self.hidden, self.epochs, self.batch_size, self.lr), compute)
        return scores, np.arange(n), {"n_inits": self.n_inits, "epochs": self.epochs}


def grand_scores(heads: list[Params], x: torch.Tensor, y: np.ndarray) -> np.ndarray:
    """Mean over ``heads`` of each row's loss-gradient norm, shape (n,), float64.

    Parameters
    ----------
    heads : list of dict of str to Tensor
        Head parameters (see :func:`~dataselect.selectors.dynamics.init_head`).
    x : Tensor of float32, shape (n, d)
    y : ndarray of int64, shape (n,)
    """

    def loss(params: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(head_logits(params, xi[None]), yi[None])

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    total = np.zeros(len(x))
    for params in heads:
        for lo in range(0, len(x), GRAD_CHUNK):
            g = per_sample(params, x[lo : lo + GRAD_CHUNK], yt[lo : lo + GRAD_CHUNK])
            sq = sum(v.reshape(v.shape[0], -1).pow(2).sum(dim=1) for v in g.values())
            total[lo : lo + GRAD_CHUNK] += sq.sqrt().numpy()
    return total / len(heads)
