"""Options and choices shared by the sub-commands, and the one place the CLI loads an encoder."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


class Metric(str, Enum):
    cosine = "cosine"
    ip = "ip"
    l2 = "l2"


class IndexKind(str, Enum):
    flat = "flat"
    hnsw = "hnsw"
    ivf = "ivf"


ModelOpt = typer.Option(None, "--model", help="Model folder or bundled name (default: all-MiniLM-L6-v2).")
BatchOpt = typer.Option(64, "--batch-size", min=1, help="Texts per forward pass.")
FormatOpt = typer.Option(OutputFormat.table, "--format", help="table (for people) or json (one object on stdout).")
SplitOpt = typer.Option("test", "--split", help="Which split's queries (or pairs) are scored: train, dev or test.")
DimOpt = typer.Option(None, "--dim", min=1, help="Keep the first DIM coordinates and re-normalise (Matryoshka).")
LayersOpt = typer.Option(None, "--layers", min=1, help="Pool the hidden state after this many layers (early exit).")
ThreadsOpt = typer.Option(1, "--threads", min=1, help="CPU threads for this command.")


def load_encoder(model: Optional[str], **options):
    """``Encoder.load(model, **options)``: every command that encodes loads its model here, once."""
    from embedlab.models import Encoder

    return Encoder.load(model, **options)


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """``"2,10,20"`` -> ``(2, 10, 20)``; a clear usage error for anything else."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{option} must be comma-separated integers, got {text!r}.") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{option} must hold positive integers, got {text!r}.")
    return values
