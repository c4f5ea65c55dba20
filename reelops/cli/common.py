"""What every command shares: the one-line error, JSON or table output, argument types."""

from __future__ import annotations

import argparse
import json
import os


class CommandError(Exception):
    """A failure whose message is the one line the user sees."""


def emit(args, result, render) -> None:
    """Print ``result`` as one JSON object with ``--json``, else through ``render``."""
    if getattr(args, "json", False):
        print(json.dumps(result, default=_json_default, sort_keys=True))
    else:
        render(result)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def share(text: str) -> float:
    """An argparse type: a share between 0 and 1 (NaN and anything outside are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def positive_bytes(text: str) -> int:
    """An argparse type: a positive whole number of bytes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive")
    return value
