"""The ``reelops`` command.

Every command that reports a result prints a readable summary, or exactly one JSON object
with ``--json`` (CI scripts read it); on failure it exits non-zero with a one-line reason.
Heavy libraries are imported inside the handlers that need them, so ``reelops --help``
and the data commands start quickly.
"""

from __future__ import annotations

import argparse
import os
import sys

from reelops import __version__
from reelops.cli import data, deploy, manifests, models, monitoring, pipelines, registry, run, serving
from reelops.cli.common import CommandError

__all__ = ["CommandError", "build_parser", "main"]

# Command groups in the order `reelops --help` lists them.
_GROUPS = (data, models, registry, monitoring, serving, deploy, pipelines, manifests, run)


class _VersionAction(argparse.Action):
    """``--version``: the package version and the commit, looked up only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from reelops.buildinfo import git_commit

        print(f"reelops {__version__} (commit {git_commit()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every reelops command."""
    parser = argparse.ArgumentParser(prog="reelops", description="MLOps lifecycle of a movie recommender",
                                     epilog="--debug (anywhere, or REELOPS_DEBUG=1) prints the traceback of a failure")
    parser.add_argument("--version", action=_VersionAction, help="show the version and the commit it was built from")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def with_json(sub):
        sub.add_argument("--json", action="store_true", help="print the result as one JSON object")
        return sub

    for group in _GROUPS:
        group.add_commands(commands, with_json)
    return parser


def _user_facing_errors() -> tuple:
    """Error types whose message is written for the user: it is shown as it is, with no hint."""
    from reelops.data import DataValidationError, SourceError
    from reelops.gate import UnblessedModelError
    from reelops.monitoring import MonitoringInputError
    from reelops.cluster import NotConfigured
    from reelops.data.store import StoreError
    from reelops.registry import RegistryError

    return (CommandError, DataValidationError, SourceError, RegistryError, MonitoringInputError, UnblessedModelError,
            NotConfigured, StoreError)


def _one_line(error: BaseException) -> str:
    """The first line of an error's message, with its type when reelops did not write it."""
    text = str(error).strip()
    if isinstance(error, KeyError):  # str(KeyError) is only the quoted key
        return f"missing key {text}"
    if not text:
        return type(error).__name__
    first = text.splitlines()[0]
    if isinstance(error, _user_facing_errors()) or type(error).__module__.startswith("reelops"):
        return first
    # Errors from below (zlib, OS, numpy) get their type: "error: Error -3 ..." alone says little.
    return f"{type(error).__name__}: {first}"


def main(argv=None) -> int:
    """Entry point of the ``reelops`` console script.

    Every failure ends with one line, ``reelops: error: <what and where>``, and a non-zero
    exit; ``--debug`` (or ``REELOPS_DEBUG=1``) prints the traceback as well.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug may stand anywhere on the line, as users type it.
    debug = "--debug" in argv or os.environ.get("REELOPS_DEBUG", "") not in ("", "0")
    argv = [word for word in argv if word != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # usage errors: argparse has printed the one-line reason
        return int(exit_.code or 0)
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("reelops: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the user sees one line; --debug shows the rest
        if debug:
            import traceback

            traceback.print_exc()
        expected = isinstance(error, (*_user_facing_errors(), OSError, ValueError))
        hint = "" if debug or expected else " (--debug shows the traceback)"
        print(f"reelops: error: {_one_line(error)}{hint}", file=sys.stderr)
        return 1
    return 0
