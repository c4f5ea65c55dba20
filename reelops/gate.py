"""The promotion gate: may a candidate replace the model in production?

The candidate and the production model are evaluated on the same held-out rows (the
candidate's held-out split of the dataset, less every (user, movie) pair the production
model was trained on, so neither model is scored on what it memorised). With no model in
production, the candidate must beat the bias baseline's RMSE and the popularity
baseline's NDCG@10, both fitted on the candidate's training rows. The decision, what it
was compared with, the metrics of both sides and every reason go into
``MODEL_DIR/blessing.json``, which registration with an alias, promotion and serving require.

A blessing is bound to the model's content: it records :func:`model_content_hash` of the
folder it judged, and counts only for a folder with the same hash, so a copied or
hand-written ``blessing.json`` blesses nothing else.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reelops.blessing import BLESSED, REJECTED, blessing_status, is_blessed

__all__ = ["BLESSED", "REJECTED", "Thresholds", "UnblessedModelError", "blessing_status", "check_servable",
           "is_blessed", "run_gate"]


class UnblessedModelError(RuntimeError):
    """A model the gate did not bless was about to be served or promoted without an override."""


@dataclass
class Thresholds:
    """How much worse than production a candidate may be (defaults of the issue).

    Attributes:
        rmse_tolerance: RMSE may not get worse by more than this (absolute).
        ndcg_relative_drop: NDCG@10 may not drop by more than this share.
        cold_rmse_tolerance: the cold-user slice's RMSE may not get worse by more than this.
    """

    rmse_tolerance: float = 0.005
    ndcg_relative_drop: float = 0.02
    cold_rmse_tolerance: float = 0.01


def _summary(report: dict) -> dict:
    return {"rmse": report["rmse"], "mae": report["mae"], "ndcg@10": report["ndcg@10"],
            "precision@10": report["precision@10"], "cold_rmse": report["slices"]["cold_users"]["rmse"],
            "rows": report["rows"], "ranked_users": report["ranked_users"]}


def _exclude_pairs_seen_by(model, rows):
    """Drop the rows whose (user, movie) pair the model was trained on."""
    users = model.user_index(rows["user_id"].to_numpy())
    movies = model.movie_index(rows["movie_id"].to_numpy())
    n_movies = len(model.movie_ids_)
    owners = np.repeat(np.arange(len(model.seen_indptr_) - 1), np.diff(model.seen_indptr_))
    seen_pairs = owners.astype(np.int64) * n_movies + model.seen_items_
    known = (users >= 0) & (movies >= 0)
    seen = known & np.isin(users.astype(np.int64) * n_movies + movies, seen_pairs)
    return rows[~seen]


def run_gate(model_dir: str | os.PathLike, data: str | os.PathLike, thresholds: Thresholds | None = None,
             production_dir: str | os.PathLike | None = None) -> dict:
    """Decide on a candidate and write ``MODEL_DIR/blessing.json``.

    Args:
        model_dir: the candidate's model directory.
        data: the dataset (version id or folder) the candidate was trained on, or another.
        thresholds: the tolerances (defaults: :class:`Thresholds`).
        production_dir: compare with this model directory instead of the registry's
            ``production`` alias (when no registry is reachable).

    Returns:
        The blessing (what is written to ``blessing.json``).
    """
    from reelops.data import load_dataset
    from reelops.evaluation import evaluate, evaluation_rows
    from reelops.data import holdout_split
    from reelops.models import load_model, make_model, model_content_hash

    thresholds = thresholds or Thresholds()
    candidate = load_model(model_dir)
    dataset = load_dataset(data)
    test, scored = evaluation_rows(candidate, dataset)
    production, production_version = _production(production_dir)
    reasons: list = []
    if production is not None:
        test = _exclude_pairs_seen_by(production, test)
    if len(test) == 0:
        raise ValueError("no held-out rows are left to compare on (the production model was trained on all of them)")
    candidate_metrics = _summary(evaluate(candidate, test, users=dataset["users"]))
    blessing = {
        "model_dir": str(model_dir), "dataset_version": dataset["manifest"]["version"], "scored": scored,
        "thresholds": asdict(thresholds), "evaluated_rows": int(len(test)),
        "decided_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if production is not None:
        production_metrics = _summary(evaluate(production, test, users=dataset["users"]))
        blessing["compared_with"] = {"kind": "production", "version": production_version}
        blessing["metrics"] = {"candidate": candidate_metrics, "production": production_metrics}
        if candidate_metrics["rmse"] > production_metrics["rmse"] + thresholds.rmse_tolerance:
            reasons.append(f"RMSE {candidate_metrics['rmse']:.4f} is worse than production's "
                           f"{production_metrics['rmse']:.4f} by more than {thresholds.rmse_tolerance}")
        floor = production_metrics["ndcg@10"] * (1 - thresholds.ndcg_relative_drop)
        if candidate_metrics["ndcg@10"] < floor:
            reasons.append(f"NDCG@10 {candidate_metrics['ndcg@10']:.4f} dropped more than "
                           f"{thresholds.ndcg_relative_drop:.0%} below production's {production_metrics['ndcg@10']:.4f}")
        cold_c, cold_p = candidate_metrics["cold_rmse"], production_metrics["cold_rmse"]
        if np.isfinite(cold_c) and np.isfinite(cold_p) and cold_c > cold_p + thresholds.cold_rmse_tolerance:
            reasons.append(f"cold-user RMSE {cold_c:.4f} is worse than production's {cold_p:.4f} "
                           f"by more than {thresholds.cold_rmse_tolerance}")
    else:
        # No production model: the candidate must beat simple baselines fitted on its own training rows.
        holdout = (candidate.metadata_.get("holdout") or {}).get("kind", "none")
        same_data = dataset["manifest"]["content_hash"] == candidate.metadata_.get("dataset_hash")
        train_rows = holdout_split(dataset["ratings"], holdout)[0] if same_data else dataset["ratings"].iloc[:0]
        if len(train_rows) == 0:
            raise ValueError("with no production model the gate needs the candidate's own dataset "
                             "(to fit the baselines on its training rows)")
        fit_args = dict(users=dataset["users"], movies=dataset["movies"])
        bias = _summary(evaluate(make_model("baseline").fit(train_rows, **fit_args), test, users=dataset["users"]))
        popularity = _summary(evaluate(make_model("popularity").fit(train_rows, **fit_args), test, users=dataset["users"]))
        blessing["compared_with"] = {"kind": "baselines", "version": None}
        blessing["metrics"] = {"candidate": candidate_metrics, "bias_baseline": bias, "popularity_baseline": popularity}
        if not candidate_metrics["rmse"] < bias["rmse"]:
            reasons.append(f"RMSE {candidate_metrics['rmse']:.4f} does not beat the bias baseline's {bias['rmse']:.4f}")
        if not candidate_metrics["ndcg@10"] > popularity["ndcg@10"]:
            reasons.append(f"NDCG@10 {candidate_metrics['ndcg@10']:.4f} does not beat the popularity baseline's "
                           f"{popularity['ndcg@10']:.4f}")
    blessing["model_hash"] = model_content_hash(model_dir)
    blessing["decision"] = REJECTED if reasons else BLESSED
    blessing["reasons"] = reasons or ["every threshold holds"]
    path = Path(model_dir) / "blessing.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(blessing, indent=2, sort_keys=True, default=float))
    os.replace(temporary, path)
    from reelops.blessing import write_model_report

    write_model_report(model_dir)  # the report now says what the gate decided, and why
    return blessing


def _production(production_dir):
    from reelops.models import load_model

    if production_dir is not None:
        return load_model(production_dir), str(production_dir)
    from reelops import registry

    try:
        model, version = registry.load_by_alias(registry.PRODUCTION)
    except registry.StoreNotConfigured:
        raise  # no registry is not the same as no production model
    except registry.RegistryError:
        return None, None
    return model, version


def check_servable(model_dir: str | os.PathLike | None = None, version: str | None = None,
                   alias: str | None = None) -> str:
    """Refuse to serve a model the gate did not bless; say why it may serve otherwise.

    Args:
        model_dir: a model directory (judged by its ``blessing.json`` and content hash), or
        version: a registry version (judged by its tags), with
        alias: the alias it is served under (an override recorded for that alias counts).

    Returns:
        One line saying why the model may serve.

    Raises:
        UnblessedModelError: the model is not blessed (and holds no override).
    """
    if version is not None:
        from reelops import registry

        allowed, explanation = registry.serving_check(version, alias)
    else:
        decision, explanation = blessing_status(model_dir)
        allowed = decision == BLESSED
        explanation = f"{model_dir}: {explanation}"
    if not allowed:
        raise UnblessedModelError(f"refusing to serve: {explanation}; pass --allow-unblessed to serve it anyway")
    return explanation
