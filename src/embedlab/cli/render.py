"""How results look on a terminal: figure tables, recall tables, and search hits a person can read."""

from __future__ import annotations

import json
import sys

import typer

from embedlab.cli.options import OutputFormat

SNIPPET_CHARS = 100


def console(pipe_width: int = 160):
    """A rich console on stdout; a pipe gets ``pipe_width`` columns so that rows are not wrapped."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else pipe_width)


def emit(result: dict, fmt: OutputFormat, title: str = "") -> None:
    """Print ``result`` as one JSON object, or as a readable two-column table."""
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(result, default=float))
        return
    from rich.table import Table

    table = Table(title=title or None)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(str(key), f"{value:.4f}" if isinstance(value, float) else str(value))
    console().print(table)


def recall_table(title: str, label: str, rows: dict[str, dict[str, float]], ks):
    """A rich table of recall@k in percent: one row per ``rows`` key, one column per cut-off."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column(label)
    for k in ks:
        table.add_column(f"recall@{k}", justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{100 * values[f'recall@{k}']:.1f}" for k in ks))
    return table


def snippet(text: str | None, limit: int = SNIPPET_CHARS) -> str:
    """The first ``limit`` characters of ``text`` on one line, with an ellipsis when cut."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def hits_payload(queries, hits) -> list[dict]:
    """One ``{"query", "strategy", "hits": [{"rank", "id", "score", "text", "metadata"}]}`` per query, from
    ``Collection.search(..., include=("text", "metadata"))`` hits."""
    out = []
    for i, query in enumerate(queries):
        row = hits[i]
        out.append({"query": query, "strategy": hits.strategy[i] if hits.strategy else "", "hits": [
            {"rank": r + 1, "id": hit_id, "score": float(score), "text": item["text"], "metadata": item["metadata"]}
            for r, (hit_id, score, item) in enumerate(zip(row.ids.tolist(), row.scores.tolist(), row.payload))]})
    return out


def hits_table(result: dict):
    """A rich table of one query's hits: rank, id, score, the text's first characters and the metadata."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{escape(result['query'])}  [dim]({result['strategy']})[/dim]", title_justify="left",
                  show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("text", overflow="fold", ratio=3)
    table.add_column("metadata", overflow="fold", ratio=2)
    for hit in result["hits"]:
        meta = ", ".join(f"{k}={_short(v)}" for k, v in (hit["metadata"] or {}).items())
        table.add_row(str(hit["rank"]), escape(str(hit["id"])), f"{hit['score']:.4f}", escape(snippet(hit["text"])),
                      escape(meta))
    return table


def print_hits(results: list[dict], fmt: OutputFormat) -> None:
    """Search results as JSON (``{"results": [...]}``) or one table per query; an empty result says so."""
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"results": results}, default=str))
        return
    out = console()
    for result in results:
        if result["hits"]:
            out.print(hits_table(result))
        else:
            out.print(f"[bold]{_escape(result['query'])}[/bold]: no hits "
                      f"(nothing matched{' the filter' if result.get('filter') else ''}).")


def _short(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
