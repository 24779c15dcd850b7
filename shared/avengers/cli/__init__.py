"""The ``avengers`` command line: train, evaluate, calibrate, route and info, plus collect,
answer and serve, update and snapshot, distill, and ``local start|status|stop`` for the two small local
models.
A user mistake ends in one clear line and exit code 2, never a traceback.

Each command lives in its own module; this one builds the :data:`app` from them (in the order
``--help`` lists them) and holds :func:`main`, the console script. Helpers shared by the commands
are in the private :mod:`._common`.
"""

from __future__ import annotations

import inspect
import os
import re
import sys

import typer

from .answering import answer
from .budget import calibrate
from .collecting import collect
from .distilling import distill
from .evaluating import evaluate
from .local import local
from .online import snapshot, update
from .routing import info, route
from .serving import serve
from .training import train

app = typer.Typer(
    name="avengers",
    help="Route each query to the best of your own LLMs: embed, cluster, score, vote.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _command in (
    train,
    evaluate,
    calibrate,
    route,
    info,
    collect,
    answer,
    serve,
    update,
    snapshot,
    distill,
):
    app.command()(_command)
app.add_typer(local)


def plain_help(doc: str) -> str:
    """A command's docstring as ``--help`` text: each paragraph's lines joined (the terminal
    wraps them, never mid-sentence at the docstring's own line breaks) and RST literals
    (````x````) written plainly."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(doc))
    text = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    return re.sub(r"``(.+?)``", r"\1", text)


for _info in (*app.registered_commands, *local.registered_commands):
    _doc = _info.help or inspect.getdoc(_info.callback) or ""
    _info.help = plain_help(_doc)


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    args = list(argv if argv is not None else sys.argv[1:])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # `train` tokenizes on every core (it forks nothing afterwards); the other commands keep the
    # tokenizer single-threaded so processes they fork never inherit a used thread pool
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if args[:1] == ["train"] else "false")
    app(args=args, prog_name="avengers")


__all__ = ["app", "main"]
