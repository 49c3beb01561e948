"""``pseudo_perplexity``: the perplexity band on MLM pseudo-perplexity (Salazar et al., ACL 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dataselect.selectors.perplexity import PerplexityFilter
from dataselect.selectors.registry import register

__all__ = ["PseudoPerplexityFilter"]


@register("pseudo_perplexity")
@dataclass(frozen=True)
class PseudoPerplexityFilter(PerplexityFilter):
    """:class:`PerplexityFilter` on the masked-LM ``pseudo_perplexity`` column.

    Same band, sampling and ranking (parameters, errors and ``info`` as
    there, with ``features["pseudo_perplexity"]`` in place of
    ``perplexity``). Pseudo-perplexity scores each token given *both* sides
    [1]_, so it reads a sentence the way the bidirectional encoders that
    get fine-tuned here do, where a causal LM's perplexity sees only the
    left context. Needs ``features.mlm_model``.

    References
    ----------
    .. [1] J. Salazar, D. Liang, T. Q. Nguyen, K. Kirchhoff, "Masked Language
       Model Scoring", ACL 2020.
    """

    requires: ClassVar[tuple[str, ...]] = ("pseudo_perplexity",)
    column: ClassVar[str] = "pseudo_perplexity"
