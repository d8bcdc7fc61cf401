"""The late-interaction token projection: a bias-free linear map of token states ``[..., d] -> [..., dim]``.

ColBERT (Khattab & Zaharia 2020) and PyLate project each token state of the backbone to a small width (e.g.
384 -> 128) before MaxSim; :class:`~embedlab.train.losses.MaxSimContrastive` trains such a map and
:meth:`~embedlab.models.Encoder.encode_tokens` applies it. A model folder keeps it in ``token_projection/``
(``config.json`` + ``model.safetensors`` with ``weight [dim, d]``), a folder sentence-transformers does not
list in ``modules.json`` and so ignores: the folder still loads there as the single-vector model it also is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from embedlab.errors import DataFormatError

FOLDER = "token_projection"


def new_projection(in_features: int, out_features: int, *, seed: int = 0) -> torch.nn.Linear:
    """A ``Linear(in_features, out_features, bias=False)`` with orthonormal rows drawn from ``seed`` (a random
    ``out_features``-dimensional subspace: inner products of the projected tokens start close to the full ones)."""
    projection = torch.nn.Linear(in_features, out_features, bias=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(in_features, out_features, generator=generator))
        projection.weight.copy_(q.T)
    return projection


def read_token_projection(folder: Path, token_dim: int) -> torch.nn.Linear | None:
    """The projection saved in ``folder/token_projection`` (over token states of width ``token_dim``), or None."""
    sub = Path(folder) / FOLDER
    if not sub.is_dir():
        return None
    from safetensors.torch import load_file

    try:
        config = json.loads((sub / "config.json").read_text())
        weight = load_file(str(sub / "model.safetensors"))["weight"]
        in_features, out_features = int(config["in_features"]), int(config["out_features"])
    except Exception as exc:  # json, safetensors and a missing key raise many types
        raise DataFormatError(f"Encoder.load: {sub} must hold config.json (in_features, out_features) and "
                              f"model.safetensors (weight), got {type(exc).__name__}: {str(exc)[:200]}. "
                              "Re-save the model, or delete that folder to drop the projection.") from None
    if tuple(weight.shape) != (out_features, in_features) or in_features != token_dim:
        raise DataFormatError(f"Encoder.load: the token projection in {sub} must be [out_features, {token_dim}] "
                              f"(the backbone's width), got weight {tuple(weight.shape)} and config "
                              f"{in_features} -> {out_features}. Re-save the model.")
    projection = torch.nn.Linear(in_features, out_features, bias=False)
    with torch.no_grad():
        projection.weight.copy_(weight)
    return projection


def write_token_projection(folder: Path, projection: torch.nn.Linear) -> None:
    """Write ``projection`` into ``folder/token_projection``."""
    from safetensors.torch import save_file

    sub = Path(folder) / FOLDER
    sub.mkdir()
    (sub / "config.json").write_text(json.dumps({"in_features": projection.in_features,
                                                  "out_features": projection.out_features, "bias": False}, indent=2))
    save_file({"weight": projection.weight.detach().cpu().contiguous()}, str(sub / "model.safetensors"))
