"""Model folders written by the installed sentence-transformers (6.x layout), the < 6 layout, and their error paths.

Every folder here is built in the test by sentence-transformers itself from the tiny BERT fixture, saved, then
loaded by ``Encoder.load``; its vectors are compared with sentence-transformers' own ``encode``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embedlab.errors import DataFormatError, InvalidInputError, ModelNotFoundError, UnsupportedError
from embedlab.models import Encoder, Pooling
from embedlab.models.folder import read_folder, resolve_model_path

TEXTS = ["the dog runs", "a big house is on the small house and the cat sleeps under the old tree", "hello",
         "red blue green", ""]
PROMPT = "the old river "


def _st_folder(tiny, path, *, pooling="mean", include_prompt=True, dense=None, normalize=False, seed=0):
    """Save a SentenceTransformer (Transformer, Pooling, maybe Dense modules and Normalize) to ``path``; return it."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling as StPooling, Transformer

    torch.manual_seed(seed)
    modules = [Transformer(str(tiny)), StPooling(32, pooling_mode=pooling, include_prompt=include_prompt)]
    width = 32
    for out, activation in dense or []:
        modules.append(Dense(width, out, activation_function=activation))
        width = out
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu")
    model.save(str(path))
    return model


def _cosines(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    return (ours * theirs).sum(1) / np.maximum(np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1), 1e-12)


def _edit(path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _to_legacy_layout(folder) -> None:
    """Rewrite a 6.x folder as sentence-transformers < 6 writes it: pooling booleans, ``sentence_transformers.models``."""
    pooling_file = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling_file.read_text())
    mode = config.pop("pooling_mode")
    keys = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    legacy = {"word_embedding_dimension": config.pop("embedding_dimension"),
              **{key: name == mode for name, key in keys.items()}, "pooling_mode_max_tokens": False, **config}
    pooling_file.write_text(json.dumps(legacy))
    modules = json.loads((folder / "modules.json").read_text())
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"].rsplit(".", 1)[-1]
    (folder / "modules.json").write_text(json.dumps(modules))


# ---------------------------------------------------------------- parity with sentence-transformers
HEADS = {
    "plain": {},
    "normalize": {"normalize": True},
    "dense-tanh": {"dense": [(16, torch.nn.Tanh())]},
    "dense-identity-normalize": {"dense": [(24, torch.nn.Identity()), (16, torch.nn.Tanh())], "normalize": True},
}


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("pooling", ["mean", "cls", "lasttoken"])
def test_a_sentence_transformers_6_folder_gives_its_vectors(tiny, tmp_path, pooling, head):
    reference = _st_folder(tiny, tmp_path / "st", pooling=pooling, **HEADS[head])
    assert json.loads((tmp_path / "st" / "1_Pooling" / "config.json").read_text())["pooling_mode"] == pooling
    encoder = Encoder.load(tmp_path / "st")
    ours, theirs = encoder.encode(TEXTS), reference.encode(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), encoder.dim)
    assert _cosines(ours, theirs).min() >= 0.9999
    assert encoder.normalize_module is bool(HEADS[head].get("normalize"))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_include_prompt_false_pools_only_the_text(tiny, tmp_path, pooling):
    reference = _st_folder(tiny, tmp_path / "st", pooling=pooling, include_prompt=False, dense=[(16, torch.nn.Tanh())])
    encoder = Encoder.load(tmp_path / "st")
    assert encoder.include_prompt is False
    ours, theirs = encoder.encode(TEXTS, prompt=PROMPT), reference.encode(TEXTS, prompt=PROMPT)
    assert _cosines(ours, theirs).min() >= 0.9999
    assert _cosines(ours, encoder.encode([PROMPT + t for t in TEXTS])).min() < 0.999  # the same text, prompt pooled
    features = encoder.tokenize(TEXTS, prompt=PROMPT)  # forward (training) leaves the prompt out too
    np.testing.assert_allclose(encoder.forward(features).detach().numpy(),
                               encoder.encode(TEXTS, prompt=PROMPT, normalize=False), atol=1e-5)


def test_a_legacy_layout_folder_gives_its_vectors(tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    _st_folder(tiny, tmp_path / "st", pooling="cls", include_prompt=False, dense=[(16, torch.nn.Tanh())],
               normalize=True)
    _to_legacy_layout(tmp_path / "st")
    reference = SentenceTransformer(str(tmp_path / "st"), device="cpu")  # it reads the legacy layout too
    encoder = Encoder.load(tmp_path / "st")
    assert (encoder.pooling, encoder.include_prompt, encoder.dim) == (Pooling.CLS, False, 16)
    assert _cosines(encoder.encode(TEXTS, prompt=PROMPT), reference.encode(TEXTS, prompt=PROMPT)).min() >= 0.9999


def test_the_bundled_default_model_is_a_legacy_layout_folder():
    path = resolve_model_path(None)
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True and "pooling_mode" not in pooling
    folder = read_folder(path)
    assert (folder.pooling, folder.normalize, folder.include_prompt, folder.head) == (Pooling.MEAN, True, True, ())


def test_dense_weights_as_a_torch_state_dict_are_read_without_pickle(tiny, tmp_path):
    from safetensors.torch import load_file

    reference = _st_folder(tiny, tmp_path / "st", dense=[(16, torch.nn.Tanh())])
    dense = tmp_path / "st" / "2_Dense"
    torch.save(load_file(str(dense / "model.safetensors")), str(dense / "pytorch_model.bin"))
    (dense / "model.safetensors").unlink()
    assert _cosines(Encoder.load(tmp_path / "st").encode(TEXTS), reference.encode(TEXTS)).min() >= 0.9999
    torch.save({"linear.weight": torch.zeros(16, 32), "linear.bias": _NotATensor()}, str(dense / "pytorch_model.bin"))
    with pytest.raises(DataFormatError, match="read with weights_only=True"):
        Encoder.load(tmp_path / "st")
    (dense / "pytorch_model.bin").unlink()
    with pytest.raises(ModelNotFoundError, match="must hold model.safetensors or pytorch_model.bin, got neither"):
        Encoder.load(tmp_path / "st")


class _NotATensor:
    """A pickled object that ``torch.load(weights_only=True)`` must refuse."""


def test_onnx_runs_the_dense_head_and_leaves_the_prompt_out(tiny, tmp_path):
    reference = _st_folder(tiny, tmp_path / "st", include_prompt=False, dense=[(16, torch.nn.Tanh())], normalize=True)
    encoder = Encoder.load(tmp_path / "st", backend="onnx", cache_dir=tmp_path / "cache")
    assert encoder.dim == 16 and encoder.token_dim == 32
    for prompt in (None, PROMPT):
        ours, theirs = encoder.encode(TEXTS, prompt=prompt), reference.encode(TEXTS, prompt=prompt)
        assert _cosines(ours, theirs).min() >= 0.9999
    assert encoder.encode_tokens(TEXTS[:2]).dim == 32


def test_save_keeps_the_head_and_include_prompt(tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    _st_folder(tiny, tmp_path / "st", include_prompt=False, dense=[(16, torch.nn.Identity())], normalize=True)
    encoder = Encoder.load(tmp_path / "st")
    saved = encoder.save(tmp_path / "ours")
    again, theirs = Encoder.load(saved), SentenceTransformer(str(saved), device="cpu")
    expected = encoder.encode(TEXTS, prompt=PROMPT)
    np.testing.assert_allclose(again.encode(TEXTS, prompt=PROMPT), expected, atol=1e-6)
    assert _cosines(theirs.encode(TEXTS, prompt=PROMPT), expected).min() >= 0.9999
    assert again.fingerprint == encoder.fingerprint != Encoder.load(tiny).fingerprint


def test_pooling_accepts_the_sentence_transformers_name(tiny):
    assert Encoder.load(tiny, pooling="lasttoken").pooling is Pooling.LAST_TOKEN


# ---------------------------------------------------------------- what embedlab does not run, said clearly
@pytest.mark.parametrize("config, got", [
    ({"pooling_mode": "max"}, "got 'max'"),
    ({"pooling_mode": "weightedmean"}, "got 'weightedmean'"),
    ({"pooling_mode": ["cls", "mean"]}, r"got \['cls', 'mean'\] \(concatenated\)"),
    ({"pooling_mode_max_tokens": True}, "got 'max'"),  # the legacy layout
])
def test_an_unsupported_pooling_mode_names_the_supported_ones_and_the_fix_works(tiny, tmp_path, config, got):
    _st_folder(tiny, tmp_path / "st")
    pooling_file = tmp_path / "st" / "1_Pooling" / "config.json"
    if "pooling_mode" not in config:
        _to_legacy_layout(tmp_path / "st")
        _edit(pooling_file, pooling_mode_mean_tokens=False)
    _edit(pooling_file, **config)
    with pytest.raises(UnsupportedError, match=r"must be one of \['cls', 'lasttoken', 'mean'\] \(what embedlab "
                                               rf"implements\), {got}\. Pass pooling='mean'"):
        Encoder.load(tmp_path / "st")
    assert Encoder.load(tmp_path / "st", pooling="mean").pooling is Pooling.MEAN  # the suggested fix loads it


@pytest.mark.parametrize("module", ["sentence_transformers.models.LayerNorm",
                                    "sentence_transformers.sentence_transformer.modules.cnn.CNN"])
def test_an_unknown_module_is_named(tiny, tmp_path, module):
    _st_folder(tiny, tmp_path / "st")
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_X", "type": module})
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    kind = module.rsplit(".", 1)[-1]
    with pytest.raises(UnsupportedError, match=rf"got '{module}' \({kind}\) at index 2\. embedlab does not implement"):
        Encoder.load(tmp_path / "st")


@pytest.mark.parametrize("edit, error, match", [
    ({"activation_function": "my_package.Swish"}, UnsupportedError, "activation_function in .* must be one of"),
    ({"module_input_name": "token_embeddings"}, UnsupportedError,
     "module_input_name of the Dense module in .* must be 'sentence_embedding', got 'token_embeddings'"),
    ({"in_features": 8}, DataFormatError, "in_features in .* must be 32 .*, got 8"),
    ({"out_features": "wide"}, DataFormatError, "must hold positive ints in_features and out_features"),
])
def test_a_dense_module_embedlab_cannot_run_is_refused(tiny, tmp_path, edit, error, match):
    _st_folder(tiny, tmp_path / "st", dense=[(16, torch.nn.Tanh())])
    _edit(tmp_path / "st" / "2_Dense" / "config.json", **edit)
    with pytest.raises(error, match=match):
        Encoder.load(tmp_path / "st")


@pytest.mark.parametrize("file, edit, error, match", [
    ("1_Pooling/config.json", {"include_prompt": "no"}, DataFormatError, "a boolean include_prompt"),
    ("1_Pooling/config.json", {"embedding_dimension": 64}, DataFormatError,
     "embedding_dimension must be the backbone's hidden size 32, got 64"),
    ("sentence_bert_config.json", {"transformer_task": "fill-mask"}, UnsupportedError,
     "transformer_task in .* must be 'feature-extraction'.*got 'fill-mask'"),
])
def test_a_damaged_config_is_refused(tiny, tmp_path, file, edit, error, match):
    _st_folder(tiny, tmp_path / "st")
    _edit(tmp_path / "st" / file, **edit)
    with pytest.raises(error, match=match):
        Encoder.load(tmp_path / "st")


def test_modules_out_of_order_are_refused(tiny, tmp_path):
    _st_folder(tiny, tmp_path / "st", normalize=True)
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    (tmp_path / "st" / "modules.json").write_text(json.dumps([modules[0], modules[2], modules[1]]))
    with pytest.raises(UnsupportedError, match=r"must be a Transformer, a Pooling, then Dense and Normalize modules, "
                                               r"got \['Transformer', 'Normalize', 'Pooling'\]"):
        Encoder.load(tmp_path / "st")


@pytest.mark.parametrize("value, got", [(5, "int 5"), (3.5, "float 3.5"), (b"model", "bytes b'model'"),
                                        ("", "an empty str")])
def test_load_refuses_a_name_or_path_of_the_wrong_type(value, got):
    with pytest.raises(InvalidInputError, match=rf"^Encoder\.load: name_or_path must be a model name or folder path "
                                                rf"\(str or os\.PathLike\), got {got}\. "):
        Encoder.load(value)
