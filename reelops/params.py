"""``key=value`` parameters from the command line (``--param``), shared by every command."""

from __future__ import annotations

import json


def parse_key_values(pairs) -> dict:
    """``["epochs=10", "algorithm=hybrid"]`` -> ``{"epochs": 10, "algorithm": "hybrid"}``.

    Values that read as JSON numbers or booleans become those; everything else stays text.

    Raises:
        ValueError: a pair without ``=`` or without a key.
    """
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects key=value, got {pair!r}")
        try:
            parsed = json.loads(value)
            params[key] = parsed if isinstance(parsed, (int, float, bool)) else value
        except json.JSONDecodeError:
            params[key] = value
    return params
