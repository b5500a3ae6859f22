"""`studylib <command>`: the study's command line.

Every command turns bad input into one line on stderr (`studylib: ...`) and exit code 2,
and writes its output only after the work succeeded (nothing half-written).

Each command has one module here (`studylib/cli/<name>.py`, listed in COMMAND_MODULES) that
defines `add_command(subparsers)`: it registers a parser whose `func(args)` checks the
arguments, calls the library and prints. The library never imports this package.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from studylib.cli import argtypes
from studylib.errors import StudyError

COMMAND_MODULES = tuple(f"studylib.cli.{name}" for name in (
    "testbed", "prune", "recover", "study", "pdf", "measure", "lmms", "advise", "quantize",
    "machine"))


def set_threads(threads: int | None) -> None:
    import torch

    torch.set_num_threads(threads or int(os.environ.get("STUDYLIB_THREADS", "2")))


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage too by default)
        print(f"studylib: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="studylib", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=argtypes.positive_int, help="torch threads (default 2)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    try:
        return args.func(args)
    except StudyError as exc:
        print(f"studylib: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("studylib: interrupted", file=sys.stderr)
        return 130

