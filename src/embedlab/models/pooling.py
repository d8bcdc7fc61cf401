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
    """The first token's state (the first one the mask keeps)."""
    LAST_TOKEN = "last_token"
    """The last non-padding token's state (decoder embedders, e.g. E5-Mistral, NV-Embed's baseline)."""

    @classmethod
    def parse(cls, value: "str | Pooling", owner: str = "Encoder.load") -> "Pooling":
        """``value`` as a :class:`Pooling` (``"lasttoken"``, sentence-transformers' name, is ``"last_token"``);
        an unknown name is an error that lists the valid ones."""
        return check_choice("last_token" if value == "lasttoken" else value, list(cls), owner, "pooling")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool ``hidden`` (float ``[b, t, d]``) under ``mask`` (0/1 ``[b, t]``) into ``[b, d]``.

    ``mask`` is the padding mask, or a pooling mask that also drops a prompt's tokens. The first and last
    kept positions are found without a data-dependent branch, so the same code traces into ONNX, for
    right and left padding alike.
    """
    if pooling is Pooling.MEAN:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    if pooling is Pooling.CLS:
        index = mask.to(torch.int32).argmax(dim=1)  # the first kept position (0 for right padding)
    elif pooling is Pooling.LAST_TOKEN:
        positions = torch.arange(1, mask.shape[1] + 1, device=mask.device, dtype=torch.int32)
        index = ((mask.to(torch.int32) * positions).amax(dim=1) - 1).clamp(min=0)  # the last kept position
    else:
        raise InvalidInputError(f"pool: pooling must be a Pooling, got {pooling!r}.")
    return torch.gather(hidden, 1, index.long().view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])).squeeze(1)
