"""The ``medseg`` command line: thin sub-commands over the library.

Every sub-command lives in this package, one module per stage (``data``: phantom and check,
``train``, ``crossval``, ``predict``, ``evaluate``: evaluate and volumes). Each module defines ``register(subparsers)``,
which adds its parsers and sets ``func`` to a callable taking the parsed arguments and returning an exit
code. Only this package chooses a matplotlib backend (``Agg``, in :func:`main`); library code never does.
Heavy imports (torch, MONAI) happen inside those callables, so
``medseg --help`` stays fast.

Errors with the user's input (:class:`medseg.errors.MedsegError`) and from the system (any ``OSError``:
a missing file, a full disk, a read-only file system, permission denied) print one line to stderr naming
the file and the cause and exit with status 2, never a traceback (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from medseg import __version__
from medseg.cli import compare, crossval, data, evaluate, predict, sparsify, train
from medseg.errors import MedsegError
from medseg.utils.paths import os_error_line

__all__ = ["build_parser", "cli_reference", "main"]

# Sub-command modules, in the order they appear in `medseg --help`.
_COMMAND_MODULES = (data, sparsify, train, crossval, predict, evaluate, compare)

_EPILOG = """examples:
  medseg phantom data/phantom --cases 8 --size small
  medseg check data/phantom
  medseg train liver --data data/phantom --epochs 50
  medseg predict --model runs/liver/fold0 data/new_scans --out predictions
  medseg evaluate --pred predictions --ref data/phantom --out evaluation
  medseg volumes predictions/3_seg.nii.gz --image data/phantom/volume-3.nii.gz
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="Liver and liver-tumor segmentation in CT, and measurement of what it shows.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    return parser


def cli_reference() -> str:
    """Markdown reference of every command: the text of ``medseg --help`` and each ``medseg CMD --help``."""
    from unittest import mock

    with mock.patch.dict(os.environ, {"COLUMNS": "100"}):  # argparse wraps to the terminal width
        parser = build_parser()
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return _reference_text(parser, action)


def _reference_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    parts = ["# Command-line reference", "",
             "Generated from the commands' own `--help` (`python -m medseg.cli --reference > docs/cli.md`).", "",
             "## medseg", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in action.choices.items():
        parts += [f"## medseg {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medseg``; returns the process exit code (0 ok, 1 failure, 2 bad input).

    Figures go to PNG files: ``MPLBACKEND=Agg`` (unless set) while the command runs, and the environment as
    it was afterwards, so a notebook or test process calling :func:`main` (and the kernels or subprocesses
    it starts later) keep their own backend.
    """
    chosen = "MPLBACKEND" not in os.environ
    if chosen:
        os.environ["MPLBACKEND"] = "Agg"
    try:
        return _run(argv)
    finally:
        if chosen:
            os.environ.pop("MPLBACKEND", None)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _keep_undecodable_names(sys.stdout)
    try:
        return int(args.func(args) or 0)
    except MedsegError as exc:
        print(f"medseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # full disk, read-only file system, permission denied, missing file...
        print(f"medseg {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medseg {args.command}: interrupted", file=sys.stderr)
        return 130


def _keep_undecodable_names(stream) -> None:
    """Print file names that are not valid UTF-8 byte for byte instead of failing on them."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="surrogateescape")
        except (ValueError, OSError):  # pragma: no cover - a stream that cannot be reconfigured
            pass
