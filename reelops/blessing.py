"""What a blessing says about a model directory, bound to the model's content.

``blessing.json`` is written by the gate (``reelops.gate``); registration, promotion and
serving read it here. It counts only for the folder whose content hash it records, so a
copied or hand-written blessing blesses nothing else. Kept apart from the gate, which asks
the registry for the production model, so that the registry can read blessings without a
cycle between the two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BLESSED, REJECTED = "blessed", "rejected"


def blessing_status(model_dir: str | os.PathLike) -> tuple:
    """What the gate said about exactly this model: ``(decision, explanation)``.

    ``decision`` is ``blessed`` or ``rejected`` when ``blessing.json`` judged this very
    content; ``none`` when there is no blessing, or one written for other content.
    """
    from reelops.models import model_content_hash

    path = Path(model_dir) / "blessing.json"
    if not path.is_file():
        return "none", "never gated (no blessing.json)"
    try:
        blessing = json.loads(path.read_text())
    except ValueError:
        return "none", f"{path} is not valid JSON"
    recorded = blessing.get("model_hash")
    if not recorded:
        return "none", f"{path} names no model_hash, so it cannot vouch for this model"
    if recorded != model_content_hash(model_dir):
        return "none", f"{path} was written for other model content (hash {recorded[:12]}), not this model"
    decision = blessing.get("decision")
    if decision == BLESSED:
        return BLESSED, "blessed by the gate"
    return REJECTED, "rejected by the gate: " + "; ".join(blessing.get("reasons") or ["no reason recorded"])


def is_blessed(model_dir: str | os.PathLike) -> bool:
    """Whether the gate blessed this model directory's very content."""
    return blessing_status(model_dir)[0] == BLESSED


def write_model_report(model_dir: str | os.PathLike) -> Path | None:
    """Render the model's ``evaluation.html`` again with what is known about it now: the gate's
    decision on exactly this content (and its comparison), the registry version
    (``registration.json``) and the lineage (``model.json``). Called by the gate and by
    registration; None when the folder has no ``evaluation.json`` (a model trained without a
    holdout)."""
    from reelops.evaluation import lineage_card, write_html

    folder = Path(model_dir)
    report_path = folder / "evaluation.json"
    if not report_path.is_file():
        return None
    report = json.loads(report_path.read_text())
    metadata = json.loads((folder / "model.json").read_text()) if (folder / "model.json").is_file() else {}
    decision, _ = blessing_status(folder)
    gate = None
    if decision in (BLESSED, REJECTED):
        blessing = json.loads((folder / "blessing.json").read_text())
        gate = {key: blessing.get(key) for key in ("decision", "reasons", "compared_with", "metrics")}
    registration = json.loads((folder / "registration.json").read_text()) if (folder / "registration.json").is_file() \
        else None
    card = {"lineage": lineage_card(metadata), "gate": gate, "registry": registration}
    title = f"{metadata.get('algorithm', 'model')} on {metadata.get('dataset_version', '?')}"
    if registration:
        title = f"movie-recommender version {registration['version']}: {title}"
    return write_html(report, folder, title, card)
