"""``embedlab encode``: texts in, a float32 ``[n, d]`` .npy out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from embedlab.cli.options import (BatchOpt, DimOpt, FormatOpt, LayersOpt, ModelOpt, OutputFormat,
                                  load_encoder)
from embedlab.cli.render import emit
from embedlab.errors import DataFormatError, InvalidInputError


def encode(
    input: Optional[Path] = typer.Argument(None, help="Text file, one text per line, or JSON lines with a 'text' "
                                                    "field (or --corpus)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the float32 (n, d) .npy array."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="A corpus to encode as a stream (BEIR folder, JSON "
                                          "lines or Parquet) into Parquet shards under --out; resumes a stopped run."),
    out: Optional[Path] = typer.Option(None, "--out", help="Shard folder for --corpus."),
    ray: Optional[str] = typer.Option(None, "--ray", help="With --corpus: run on Ray Data ('local', or a cluster "
                                      "address)."),
    shard_size: int = typer.Option(4096, "--shard-size", min=1, help="Records per shard (--corpus)."),
    model: Optional[str] = ModelOpt,
    batch_size: int = BatchOpt,
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prefix added to every text."),
    dim: Optional[int] = DimOpt,
    layers: Optional[int] = LayersOpt,
    backend: str = typer.Option("torch", "--backend", help="torch, or onnx (ONNX Runtime, exported and cached on first use)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, or int8 (backend onnx: dynamic int8 quantisation)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads while encoding (default: every core)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Padded-token budget per batch."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Encode texts into a .npy file, or a whole corpus into resumable Parquet shards (--corpus, --out)."""
    import numpy as np

    if corpus is not None:
        if out is None or input is not None or output is not None:
            raise InvalidInputError("embedlab encode: --corpus needs --out DIR and no INPUT / --output, got "
                                    f"out={out}, input={input}, output={output}.")
        from embedlab.scale import encode_corpus
        from embedlab.scale.encode import MAX_TOKENS

        encoder = load_encoder(model, backend=backend, precision=precision, threads=threads)
        result = encode_corpus(encoder, corpus, out, shard_size=shard_size, batch_size=batch_size,
                               max_tokens=max_tokens or MAX_TOKENS, ray=ray, show_progress=True)
        emit(result, fmt, "encode")
        return
    if input is None or output is None:
        raise InvalidInputError("embedlab encode: INPUT and --output are required (or --corpus and --out), got "
                                f"input={input}, output={output}.")
    if not output.parent.is_dir():  # before the encode, not after it
        raise InvalidInputError(f"embedlab encode: --output must be in an existing folder, got {output} "
                                f"({output.parent} does not exist). Create the folder first.")
    texts = read_texts(input)
    encoder = load_encoder(model, backend=backend, precision=precision, threads=threads)
    vectors = encoder.encode(texts, prompt=prompt, batch_size=batch_size, max_tokens=max_tokens, dim=dim,
                             layers=layers)
    np.save(output, vectors)
    emit({"n": int(vectors.shape[0]), "dim": int(vectors.shape[1]), "output": str(output)}, fmt, "encode")


def read_texts(path: Path) -> list[str]:
    """One text per line, or the ``text`` field of each JSON line (``.jsonl``)."""
    if not path.is_file():
        raise DataFormatError(f"embedlab encode: input must be a text or JSON-lines file, got no file at {path}.")
    texts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if path.suffix == ".jsonl":
            try:
                texts.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object with a 'text' field.") from None
        else:
            texts.append(line)
    return texts
