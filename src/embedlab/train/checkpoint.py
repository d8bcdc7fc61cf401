"""Checkpoints of a :func:`~embedlab.train.fit.fit` run, and the RNG streams they hold: safetensors and JSON, never pickle.

A checkpoint folder holds::

    trainer.json          format_version, step, model and config fingerprints (and the config), the optimiser's
                          param groups and non-tensor state, the scheduler's state, numpy's and Python's RNG
                          states, the data position (batches.state_dict()), losses, evaluations, best
    weights.safetensors   the trained modules' state: "model.*", "head.*" (a Dense head), "loss.<name>.*"
    optimizer.safetensors AdamW's per-parameter tensors, "<param index>.<exp_avg|exp_avg_sq|step>"
    rng.safetensors       torch's CPU generator state (and the CUDA device's when training there)
    model/                the encoder at that step, a folder Encoder.load and sentence-transformers load

Everything is written aside and renamed into place (:func:`embedlab.files.replacing`), so a crash leaves the
previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.files import fsync_dir, replacing

FORMAT_VERSION = 1
_OWNER = "fit"


# ---------------------------------------------------------------- RNG streams
def cuda_index(device: str) -> int | None:
    """The CUDA device index of ``device`` (``"cuda"`` is 0), or None on the CPU."""
    return torch.device(device).index or 0 if device.startswith("cuda") else None


def rng_state(device: str) -> dict:
    """The global RNG streams a training step may draw from: torch (CPU, and ``device``'s CUDA), numpy, Python."""
    cuda = cuda_index(device)
    return {"torch": torch.get_rng_state(), "cuda": None if cuda is None else torch.cuda.get_rng_state(cuda),
            "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict, device: str) -> None:
    """Put back a :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], cuda_index(device))
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_all(seed: int, device: str) -> None:
    """Seed every stream of :func:`rng_state` with ``seed`` (the caller restores the previous state afterwards)."""
    torch.default_generator.manual_seed(seed)
    if cuda_index(device) is not None:
        with torch.cuda.device(cuda_index(device)):
            torch.cuda.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------- checkpoints (safetensors + JSON, never pickle)
def write_checkpoint(path: Path, encoder, modules, optimizer, scheduler, batches, state, device,
                     model_fingerprint, config, config_fingerprint) -> None:
    """Write the run's state after step ``state["step"]`` to the folder ``path`` (replacing it whole).

    ``modules`` maps a prefix ("model", "head", "loss.<name>") to each trained module; ``state`` holds the step,
    losses, evaluations and best of :func:`~embedlab.train.fit.fit`."""
    from safetensors.torch import save_file

    optim = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in optim["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    weights = {f"{prefix}.{k}": v for prefix, m in modules.items() for k, v in m.state_dict().items()}
    rng = rng_state(device)
    np_rng = rng["numpy"]
    meta = {
        "format_version": FORMAT_VERSION, "step": state["step"], "model_fingerprint": model_fingerprint,
        "config_fingerprint": config_fingerprint, "config": config,
        "optimizer": {"param_groups": optim["param_groups"], "state": scalars},
        "scheduler": scheduler.state_dict(),
        "rng": {"numpy": [np_rng[0], np_rng[1].tolist(), *map(_plain, np_rng[2:])],
                "python": [rng["python"][0], list(rng["python"][1]), rng["python"][2]]},
        "data": batches.state_dict(), "losses": state["losses"], "evaluations": state["evaluations"],
        "best": state["best"],
    }
    text = json.dumps(meta)  # fails here, before anything is written, if a state is not plain data
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.mkdir()
        save_file(_plain_tensors(weights), tmp / "weights.safetensors")
        save_file(_plain_tensors(tensors), tmp / "optimizer.safetensors")
        save_file(_plain_tensors({k: v for k, v in (("torch", rng["torch"]), ("cuda", rng["cuda"])) if v is not None}),
                  tmp / "rng.safetensors")
        encoder.save(tmp / "model")
        (tmp / "trainer.json").write_text(text)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _plain_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses tensors that share memory)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def resolve_checkpoint(resume) -> Path:
    """The checkpoint folder ``resume`` names: itself, or a run folder's ``checkpoints/last``."""
    path = Path(resume)
    if not (path / "trainer.json").is_file() and (path / "checkpoints" / "last" / "trainer.json").is_file():
        path = path / "checkpoints" / "last"
    if not (path / "trainer.json").is_file():
        raise InvalidInputError(f"{_OWNER}: resume must be a checkpoint folder holding trainer.json (or a run folder "
                                f"with checkpoints/last), got {str(path)!r}. Pass <out>/checkpoints/last.")
    return path


def read_checkpoint(path: Path, modules, optimizer, scheduler, batches, device, *, model_fingerprint, config,
                    config_fingerprint) -> dict:
    """Check that the checkpoint at ``path`` is of this model and run config, load every state from it into
    ``modules``, ``optimizer``, ``scheduler``, ``batches`` and the RNG streams, and return its trainer.json."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((path / "trainer.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{_OWNER}: resume must be a readable checkpoint, got {path / 'trainer.json'}: {exc}.") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(f"{_OWNER}: resume must be a checkpoint of format_version {FORMAT_VERSION}, got "
                              f"{meta.get('format_version')!r} in {str(path)!r}.")
    if meta["model_fingerprint"] != model_fingerprint:
        raise InvalidInputError(f"{_OWNER}: resume must be a checkpoint of this model (fingerprint {model_fingerprint}), "
                                f"got one of model {meta['model_fingerprint']} in {str(path)!r}. Resume with the "
                                "encoder that run started from.")
    if meta["config_fingerprint"] != config_fingerprint:
        differ = [f"{k}={meta['config'].get(k)!r} there, {config.get(k)!r} here" for k in sorted(config)
                  if meta["config"].get(k) != config.get(k)]
        raise InvalidInputError(f"{_OWNER}: resume must be a checkpoint of this run's config, got one from another "
                                f"config in {str(path)!r} ({'; '.join(differ)}). Pass the settings that run used.")
    weights = load_file(path / "weights.safetensors", device=str(device))
    for prefix, module in modules.items():
        start = prefix + "."
        module.load_state_dict({k[len(start):]: v for k, v in weights.items() if k.startswith(start)}, strict=True)
    optim_state: dict[int, dict] = {}
    for key, value in load_file(path / "optimizer.safetensors").items():
        idx, name = key.split(".", 1)
        optim_state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta["optimizer"]["state"].items():
        optim_state.setdefault(int(idx), {}).update(entry)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["optimizer"]["param_groups"]]
    optimizer.load_state_dict({"state": optim_state, "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    batches.load_state_dict(meta["data"])
    tensors = load_file(path / "rng.safetensors")
    numpy_state = meta["rng"]["numpy"]
    python_state = meta["rng"]["python"]
    set_rng_state({"torch": tensors["torch"], "cuda": tensors.get("cuda") if cuda_index(device) is not None else None,
                    "numpy": (numpy_state[0], np.asarray(numpy_state[1], dtype=np.uint32), *numpy_state[2:]),
                    "python": (python_state[0], tuple(python_state[1]), python_state[2])}, device)
    return meta


def write_final(encoder, out: Path) -> None:
    """``encoder.save`` into ``out`` beside its checkpoints; ``modules.json`` moves in last."""
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".final-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    encoder.save(staging)
    try:
        for entry in sorted(staging.iterdir(), key=lambda p: p.name == "modules.json"):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
        fsync_dir(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
