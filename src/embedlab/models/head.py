"""The head after pooling: the sentence-transformers ``Dense`` and ``Normalize`` modules as one torch module.

A sentence-transformers folder may list, after its Pooling module, ``Dense`` projections
(``y = act(W x + b)``, optionally ``+ x`` or ``+ R x`` when ``use_residual``) and ``Normalize`` (unit L2
norm). :class:`Head` applies them in folder order to the pooled vectors ``[b, d]``; the torch runtime
runs it eagerly and the ONNX export traces it into the graph. A *trailing* Normalize is not part of the
head: it is the encoder's ``normalize=True`` (so ``normalize=False`` still gives the raw vectors).

Weights are read from ``model.safetensors`` or, failing that, ``pytorch_model.bin`` with
``torch.load(weights_only=True)``: never an arbitrary pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from embedlab.errors import DataFormatError, ModelNotFoundError, UnsupportedError

# the activations a Dense config may name (sentence-transformers writes the full torch class path)
ACTIVATIONS = {
    "Identity": torch.nn.Identity,
    "Tanh": torch.nn.Tanh,
    "ReLU": torch.nn.ReLU,
    "GELU": torch.nn.GELU,
    "Sigmoid": torch.nn.Sigmoid,
    "SiLU": torch.nn.SiLU,
}
_ACTIVATION_PATHS = {name: f"{cls.__module__}.{name}" for name, cls in ACTIVATIONS.items()}
SENTENCE_EMBEDDING = "sentence_embedding"  # the only feature a head module may read and write


@dataclass(frozen=True)
class DenseConfig:
    """One ``Dense`` module of a folder: ``path`` holds its config.json and weights."""

    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # a key of ACTIVATIONS
    residual: bool


@dataclass(frozen=True)
class NormalizeConfig:
    """A ``Normalize`` module that is followed by a Dense (a trailing one is the encoder's ``normalize``)."""


def read_dense(path: Path, config: dict, file: Path) -> DenseConfig:
    """The Dense module described by ``config`` (read from ``file``); anything embedlab cannot run is an error."""
    _check_io_names(config, file, "Dense")
    try:
        in_features, out_features = int(config["in_features"]), int(config["out_features"])
        bias = config.get("bias", True)
        residual = config.get("use_residual", False)
        if not isinstance(bias, bool) or not isinstance(residual, bool) or min(in_features, out_features) < 1:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise DataFormatError(
            f"Encoder.load: {file} must hold positive ints in_features and out_features and booleans bias and "
            f"use_residual, got {config!r}. Re-save the model with sentence-transformers."
        ) from None
    activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")  # its constructor default
    name = activation.rsplit(".", 1)[-1] if isinstance(activation, str) and activation.startswith("torch.") else None
    if name not in ACTIVATIONS:
        raise UnsupportedError(
            f"Encoder.load: activation_function in {file} must be one of {sorted(_ACTIVATION_PATHS.values())}, "
            f"got {activation!r}. Load this model with sentence-transformers, or re-save it with one of these."
        )
    return DenseConfig(path, in_features, out_features, bias, name, residual)


def read_normalize(config: dict, file: Path) -> None:
    """Check a Normalize config: it must act on the sentence embedding."""
    _check_io_names(config, file, "Normalize")


def _check_io_names(config: dict, file: Path, kind: str) -> None:
    for key in ("module_input_name", "module_output_name"):
        value = config.get(key)
        if value not in (None, SENTENCE_EMBEDDING):
            raise UnsupportedError(
                f"Encoder.load: {key} of the {kind} module in {file} must be {SENTENCE_EMBEDDING!r}, got {value!r}. "
                f"embedlab applies {kind} to the pooled vector only; load this model with sentence-transformers."
            )


class Dense(torch.nn.Module):
    """``act(W x + b)`` (plus ``x``, or ``R x`` when the widths differ, with ``residual``): ``[b, in] -> [b, out]``."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, activation: str = "Tanh",
                 residual: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features, bias=bias)
        self.activation_name = activation
        self.activation = ACTIVATIONS[activation]()
        self.use_residual = residual
        if residual and in_features != out_features:
            self.residual = torch.nn.Linear(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if hasattr(self, "residual") else x)
        return out

    def config(self) -> dict:
        """The sentence-transformers config.json of this module."""
        out = {"in_features": self.linear.in_features, "out_features": self.linear.out_features,
               "bias": self.linear.bias is not None, "activation_function": _ACTIVATION_PATHS[self.activation_name]}
        if self.use_residual:
            out["use_residual"] = True
        return out


class Normalize(torch.nn.Module):
    """Unit L2 norm per row (``[b, d] -> [b, d]``), as sentence-transformers' Normalize."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2, dim=-1)


class Head(torch.nn.Sequential):
    """The Dense / Normalize modules after pooling, in folder order: ``[b, d_in] -> [b, dim]``."""

    @property
    def dim(self) -> int:
        dense = [m for m in self if isinstance(m, Dense)]
        return dense[-1].linear.out_features

    def describe(self) -> list:
        """A JSON summary of the modules (it keys ONNX builds)."""
        return [m.config() if isinstance(m, Dense) else "normalize" for m in self]


def build_head(steps: tuple, width: int) -> Head | None:
    """The :class:`Head` for ``steps`` (:class:`DenseConfig` / :class:`NormalizeConfig`) over pooled vectors of
    ``width``, with the Dense weights loaded; None when there are no steps."""
    if not steps:
        return None
    modules: list[torch.nn.Module] = []
    for step in steps:
        if isinstance(step, NormalizeConfig):
            modules.append(Normalize())
            continue
        if step.in_features != width:
            raise DataFormatError(
                f"Encoder.load: in_features in {step.path / 'config.json'} must be {width} (the width of the "
                f"vectors it receives), got {step.in_features}. Re-save the model with sentence-transformers."
            )
        dense = Dense(step.in_features, step.out_features, bias=step.bias, activation=step.activation,
                      residual=step.residual)
        state = _read_weights(step.path)
        try:
            dense.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise DataFormatError(
                f"Encoder.load: the weights in {step.path} must match its config.json "
                f"({step.in_features} -> {step.out_features}, bias={step.bias}), got: {str(exc)[:300]}"
            ) from None
        modules.append(dense.eval())
        width = step.out_features
    return Head(*modules)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    safetensors_file, torch_file = folder / "model.safetensors", folder / "pytorch_model.bin"
    try:
        if safetensors_file.is_file():
            from safetensors.torch import load_file

            return load_file(str(safetensors_file))
        if torch_file.is_file():
            return torch.load(str(torch_file), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and the restricted unpickler raise many types
        raise DataFormatError(
            f"Encoder.load: the Dense weights in {folder} must be a readable safetensors file or a plain tensor "
            f"state dict (read with weights_only=True), got {type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    raise ModelNotFoundError(
        f"Encoder.load: the Dense module folder {folder} must hold model.safetensors or pytorch_model.bin, "
        "got neither. Re-save the model with sentence-transformers."
    )


def write_head(folder: Path, head: Head, first_index: int) -> list[dict]:
    """Write ``head``'s modules as sentence-transformers module folders ``<i>_Dense`` / ``<i>_Normalize`` in
    ``folder``; returns their ``modules.json`` entries."""
    from safetensors.torch import save_file

    entries = []
    for i, module in enumerate(head, start=first_index):
        kind = "Dense" if isinstance(module, Dense) else "Normalize"
        sub = folder / f"{i}_{kind}"
        sub.mkdir()
        if isinstance(module, Dense):
            (sub / "config.json").write_text(json.dumps(module.config(), indent=2))
            save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                      str(sub / "model.safetensors"))
        entries.append({"idx": i, "name": str(i), "path": sub.name, "type": f"sentence_transformers.models.{kind}"})
    return entries
