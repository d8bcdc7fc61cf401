"""The ``embedlab`` app: each stage's commands, registered from their modules, and the error edge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from embedlab.cli import encode as encode_cli
from embedlab.cli import index as index_cli
from embedlab.cli import serve as serve_cli
from embedlab.cli import transfer as transfer_cli
from embedlab.cli.eval import bench_app, eval_app
from embedlab.cli.limit import limit_app
from embedlab.cli.options import FormatOpt, ModelOpt, OutputFormat
from embedlab.cli.train import train_app
from embedlab.errors import EmbedlabError


class _Commands(TyperGroup):
    """Turns an embedlab error from any sub-command into one ``error: ...`` line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EmbedlabError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_Commands, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="embedlab: text embeddings for retrieval.")
app.command("encode")(encode_cli.encode)
app.command("index")(index_cli.index_cmd)
app.command("search")(index_cli.search_cmd)
app.command("info")(index_cli.info_cmd)
app.command("get")(index_cli.get_cmd)
app.command("delete")(index_cli.delete_cmd)
app.command("compact")(index_cli.compact_cmd)
app.command("export")(transfer_cli.export_cmd)
app.command("import")(transfer_cli.import_cmd)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(limit_app, name="limit")
app.add_typer(train_app, name="train")
app.command("serve")(serve_cli.serve_cmd)


def _version(value: bool) -> None:
    if value:
        from embedlab import __version__

        typer.echo(f"embedlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """embedlab: text embeddings for retrieval."""


@app.command()
def demo(
    model: Optional[str] = ModelOpt,
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Folder holding seed-papers, stsbenchmark, wordnet-beir and limit-small."),
    fmt: OutputFormat = FormatOpt,
) -> None:
    """The main job on embedded defaults: index papers, search them, measure quality and compression, LIMIT."""
    from embedlab.demo import run_demo

    run_demo(model=model, data=data, fmt=fmt)


def main() -> None:
    """Console entry point."""
    # The process edge: quiet transformers' per-load weight bars (our own bars stay).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    app(prog_name="embedlab")


