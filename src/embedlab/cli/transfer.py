"""``embedlab export`` and ``embedlab import``: copy a collection to Milvus and back, resumably
(:func:`embedlab.scale.transfer.copy_collection`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embedlab.cli.options import FormatOpt, OutputFormat
from embedlab.cli.render import emit
from embedlab.errors import InvalidInputError

BatchItemsOpt = typer.Option(1000, "--batch-size", min=1, max=10_000, help="Items per batch (each batch is resumable).")


def export_cmd(
    source: Path = typer.Argument(..., help="The collection folder to copy."),
    dest: Path = typer.Argument(..., help="New folder for the Milvus-backed copy (rerun the same command to resume)."),
    to: str = typer.Option(..., "--to", help="Target backend: milvus."),
    uri: Optional[str] = typer.Option(None, "--uri", help="Milvus server, e.g. http://127.0.0.1:19530 (default: "
                                      "Milvus Lite embedded in DEST)."),
    name: Optional[str] = typer.Option(None, "--name", help="Milvus collection name (default: from DEST's name)."),
    batch_size: int = BatchItemsOpt,
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Copy a local collection into Milvus in batches, with progress; a stopped copy resumes after its last batch."""
    from embedlab.scale.transfer import copy_collection

    if to != "milvus":
        raise InvalidInputError(f"embedlab export: --to must be 'milvus', got {to!r}. Use embedlab import to copy "
                                "back to a local collection.")
    emit(copy_collection(source, dest, backend="milvus", uri=uri, name=name, batch_size=batch_size,
                         show_progress=fmt is OutputFormat.table), fmt, "export")


def import_cmd(
    source: Path = typer.Argument(..., help="A Milvus-backed collection folder (made by export or backend='milvus')."),
    dest: Path = typer.Argument(..., help="New local collection folder (rerun the same command to resume)."),
    batch_size: int = BatchItemsOpt,
    fmt: OutputFormat = FormatOpt,
) -> None:
    """Copy a Milvus-backed collection into a local collection folder, in batches, resumably."""
    from embedlab.scale.transfer import copy_collection

    emit(copy_collection(source, dest, backend="local", batch_size=batch_size,
                         show_progress=fmt is OutputFormat.table), fmt, "import")
