"""Pooling: hidden states ``[b, t, d]`` + attention mask ``[b, t]`` -> one vector per text ``[b, d]``.

Differentiable torch functions, shared by inference (``Encoder.encode``) and training.
"""

from __future__ import annotations

from enum import Enum

import torch

from embedlab.errors import InvalidInputError
from embedlab.params import check_choice


class Pooling(str, Enum):
    """How token states become one text vector."""

    MEAN = "mean"
    """Average of the non-padding token states (Reimers & Gurevych 2019, Sentence-BERT)."""
    CLS = "cls"
    """The first token's state."""
    LAST_TOKEN = "last_token"
    """The last non-padding token's state (decoder embedders, e.g. E5-Mistral, NV-Embed's baseline)."""

    @classmethod
    def parse(cls, value: "str | Pooling", owner: str = "Encoder.load") -> "Pooling":
        """``value`` as a :class:`Pooling`; an unknown name is an error that lists the valid ones."""
        return check_choice(value, list(cls), owner, "pooling")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool ``hidden`` (float ``[b, t, d]``) under ``mask`` (0/1 ``[b, t]``) into ``[b, d]``."""
    if pooling is Pooling.MEAN:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    if pooling is Pooling.CLS:
        return hidden[:, 0]
    if pooling is Pooling.LAST_TOKEN:
        # Works for right padding; with left padding the last column is always a real token.
        last = mask.sum(dim=1).long() - 1
        if bool((mask[:, -1] == 1).all()):
            last = torch.full_like(last, mask.shape[1] - 1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise InvalidInputError(f"pool: pooling must be a Pooling, got {pooling!r}.")
