"""Real-time prediction: the KServe predictor for recommendations (V1 and V2 protocols).

``import kserve`` parses ``sys.argv`` at import time, so this package imports it lazily,
with a clean argv, through :func:`import_kserve`.
"""

from __future__ import annotations

import sys


def import_kserve():
    """Import kserve without letting it parse this process's command line."""
    if "kserve" in sys.modules:
        return sys.modules["kserve"]
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve
    finally:
        sys.argv = saved
    return kserve
