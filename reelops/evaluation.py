"""Evaluation: rating error, ranking quality over the full catalogue, coverage, slices, reports.

Ranking metrics rank every movie the user did not rate in training (no sampled
negatives); relevant movies are the user's test ratings of 4 stars or more; users with at
least one relevant test rating count.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from reelops.data.layouts import GENRES

RELEVANT_RATING = 4.0
COLD_USER_MAX_TRAIN = 20


# ---------------------------------------------------------------------- metrics


def rmse(predicted, actual) -> float:
    """Root mean squared error."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    return float(np.sqrt(np.mean((predicted - actual) ** 2))) if len(actual) else float("nan")


def mae(predicted, actual) -> float:
    """Mean absolute error."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    return float(np.mean(np.abs(predicted - actual))) if len(actual) else float("nan")


def precision_at_k(recommended, relevant: set, k: int) -> float:
    """Share of the top k that are relevant (k in the denominator, as is usual)."""
    return sum(1 for item in list(recommended)[:k] if item in relevant) / k


def recall_at_k(recommended, relevant: set, k: int) -> float:
    """Share of the relevant items found in the top k."""
    return sum(1 for item in list(recommended)[:k] if item in relevant) / len(relevant) if relevant else 0.0


def ndcg_at_k(recommended, relevant: set, k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance."""
    gains = [1.0 / np.log2(rank + 2) for rank, item in enumerate(list(recommended)[:k]) if item in relevant]
    ideal = sum(1.0 / np.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return float(sum(gains) / ideal) if ideal else 0.0


def average_precision_at_k(recommended, relevant: set, k: int) -> float:
    """AP@k: mean of precision at each hit, over min(|relevant|, k)."""
    hits, total = 0, 0.0
    for rank, item in enumerate(list(recommended)[:k]):
        if item in relevant:
            hits += 1
            total += hits / (rank + 1)
    return total / min(len(relevant), k) if relevant else 0.0


# ---------------------------------------------------------------------- evaluation


def evaluation_rows(model, dataset: dict) -> tuple:
    """The rows to score: the model's held-out rows for its own dataset, else every row.

    Returns:
        ``(test rows, description of what was scored)``.
    """
    from reelops.data import holdout_split

    meta = getattr(model, "metadata_", {}) or {}
    manifest = dataset["manifest"]
    holdout = (meta.get("holdout") or {}).get("kind", "none")
    if manifest.get("content_hash") == meta.get("dataset_hash") and holdout != "none":
        _, test = holdout_split(dataset["ratings"], holdout)
        return test, f"held-out rows of the training split ({holdout})"
    if manifest.get("content_hash") == meta.get("dataset_hash"):
        raise ValueError("the model was trained on every row of this dataset (--holdout none): "
                         "evaluate it on another dataset")
    return dataset["ratings"], "every row of another dataset"


def evaluate(model, test: pd.DataFrame, movies: pd.DataFrame | None = None, k: int = 10,
             users: pd.DataFrame | None = None) -> dict:
    """Score a model on test ratings.

    Args:
        model: a fitted :class:`reelops.models.Recommender`.
        test: ratings to score (user_id, movie_id, rating).
        movies: the catalogue, for genre slices (defaults to the model's features).
        k: the cut-off of the ranking metrics.
        users: demographics of users the model has not seen (side-feature path).

    Returns:
        A JSON-able report: ``rmse``, ``mae``, ``precision@k``, ``recall@k``, ``ndcg@k``,
        ``map@k``, ``coverage``, ``mean_popularity``, ``slices``, counts.
    """
    predicted, paths = model.predict_ratings(test["user_id"].to_numpy(), test["movie_id"].to_numpy(), demographics=users)
    actual = test["rating"].to_numpy(float)
    report = {
        "rows": int(len(test)),
        "rmse": rmse(predicted, actual),
        "mae": mae(predicted, actual),
        "paths": {path: int(count) for path, count in pd.Series(paths, dtype=object).value_counts().items()},
    }
    report.update(ranking_metrics(model, test, k=k, users=users))

    train_counts = pd.Series(np.diff(model.seen_indptr_), index=model.user_ids_)
    activity = train_counts.reindex(test["user_id"]).fillna(0).to_numpy()
    cold = activity < COLD_USER_MAX_TRAIN
    slices = {"cold_users": {"rows": int(cold.sum()), "rmse": rmse(predicted[cold], actual[cold]),
                             "definition": f"fewer than {COLD_USER_MAX_TRAIN} training ratings"}}
    genre_table = model.features_.movies.set_index("movie_id")
    flags = genre_table.reindex(test["movie_id"])[[f"genre_{g}" for g in GENRES]].fillna(0).to_numpy()
    for column, genre in enumerate(GENRES):
        rows = flags[:, column] > 0
        if rows.any():
            slices[f"genre={genre}"] = {"rows": int(rows.sum()), "rmse": rmse(predicted[rows], actual[rows])}
    report["slices"] = slices
    report["error_histogram"] = np.histogram(predicted - actual, bins=np.linspace(-4, 4, 33))[0].tolist()
    return report


def ranking_metrics(model, test: pd.DataFrame, k: int = 10, users: pd.DataFrame | None = None, batch: int = 512) -> dict:
    """Precision, recall, NDCG and MAP at k over the full catalogue, coverage and popularity."""
    relevant = test[test["rating"] >= RELEVANT_RATING].groupby("user_id")["movie_id"].apply(set)
    user_ids = relevant.index.to_numpy()
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    recommended_movies: list = []
    popularity = pd.Series(model.popularity_, index=model.movie_ids_)
    for start in range(0, len(user_ids), batch):
        chunk = user_ids[start: start + batch]
        answer = model.recommend(chunk, k=k, exclude_rated=True, demographics=users)
        for user_id, movies in zip(chunk, answer.movie_ids):
            movies = movies[movies >= 0]
            wanted = relevant[user_id]
            sums["precision"] += precision_at_k(movies, wanted, k)
            sums["recall"] += recall_at_k(movies, wanted, k)
            sums["ndcg"] += ndcg_at_k(movies, wanted, k)
            sums["map"] += average_precision_at_k(movies, wanted, k)
            recommended_movies.append(movies)
    n = max(len(user_ids), 1)
    flat = np.concatenate(recommended_movies) if recommended_movies else np.array([], dtype=np.int64)
    return {
        "k": k,
        "ranked_users": int(len(user_ids)),
        f"precision@{k}": sums["precision"] / n,
        f"recall@{k}": sums["recall"] / n,
        f"ndcg@{k}": sums["ndcg"] / n,
        f"map@{k}": sums["map"] / n,
        "coverage": float(len(np.unique(flat)) / max(len(model.movie_ids_), 1)),
        "mean_popularity": float(popularity.reindex(flat).mean()) if len(flat) else float("nan"),
    }


# ---------------------------------------------------------------------- reports


def write_reports(report: dict, folder: str | Path, title: str = "reelops evaluation", card: dict | None = None) -> tuple:
    """Write ``evaluation.json`` and ``evaluation.html`` (with plots and the model ``card``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "evaluation.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=float))
    return json_path, write_html(report, folder, title, card)


def write_html(report: dict, folder: str | Path, title: str, card: dict | None = None) -> Path:
    """(Re)write ``evaluation.html`` whole (a temporary name, then a rename)."""
    import os

    html_path = Path(folder) / "evaluation.html"
    partial = html_path.with_name(".evaluation.html.partial")
    partial.write_text(render_html(report, title, card), encoding="utf-8")
    os.replace(partial, html_path)
    return html_path


def lineage_card(metadata: dict) -> dict:
    """The lineage a model's ``model.json`` records, for the report's card."""
    return {"algorithm": metadata.get("algorithm", ""), "dataset_version": metadata.get("dataset_version", ""),
            "dataset_source": metadata.get("dataset_source", ""), "git_commit": metadata.get("git_commit") or "",
            "fitted_at": metadata.get("fitted_at", "")}


# The gate's metrics a report compares, in order, with how to show them.
CARD_METRICS = (("rmse", "RMSE"), ("ndcg@10", "NDCG@10"), ("cold_rmse", "RMSE of new users"))


def _card_html(card: dict) -> str:
    """The top of the per-model report: the gate's decision, the registry version and the lineage."""
    gate = card.get("gate")
    if gate is None:
        banner = ("none", "Not gated", "no gate decision for this model's content yet")
    elif gate["decision"] == "blessed":
        against = gate.get("compared_with") or {}
        versus = f"production version {against['version']}" if against.get("kind") == "production" else "the baselines"
        banner = ("blessed", "Blessed by the gate", f"compared with {versus}: " + "; ".join(gate.get("reasons", [])))
    else:
        banner = ("rejected", "REJECTED by the gate", "; ".join(gate.get("reasons", [])))
    registry = card.get("registry")
    lineage = card.get("lineage", {})
    registered = (f"version {registry['version']}" + (f" (alias {registry['alias']})" if registry.get("alias") else "")
                  if registry else "not registered")
    rows = [("registry", registered), ("git commit", lineage.get("git_commit") or "unknown"),
            ("data source", lineage.get("dataset_source") or "unknown"),
            ("dataset version", lineage.get("dataset_version") or "unknown"),
            ("algorithm", lineage.get("algorithm") or "unknown"), ("trained at", lineage.get("fitted_at") or "unknown")]
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    comparison = ""
    if gate and gate.get("metrics"):
        columns = list(gate["metrics"])
        names = {"candidate": "this model", "production": f"production (version {(gate.get('compared_with') or {}).get('version')})",
                 "bias_baseline": "bias baseline", "popularity_baseline": "popularity baseline"}
        head = "".join(f"<th>{html.escape(names.get(c, c))}</th>" for c in columns)
        body = "".join(f"<tr><td>{label}</td>" + "".join(f"<td>{_number(gate['metrics'][c].get(key))}</td>" for c in columns)
                       + "</tr>" for key, label in CARD_METRICS)
        comparison = f"<h2>The gate's comparison</h2><table><tr><th>metric</th>{head}</tr>{body}</table>"
    kind, headline, detail = banner
    return (f'<div class="gate {kind}"><strong>{html.escape(headline)}</strong>: {html.escape(detail)}</div>'
            f"<table><tr><th>model</th><th></th></tr>{table}</table>{comparison}")


def _plot_png(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    draw(axis)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(report: dict, title: str, card: dict | None = None) -> str:
    """A self-contained HTML page: the model card (gate decision, registry version, lineage; see
    ``reelops.blessing.write_model_report``), headline metrics, slices and two plots."""
    k = report.get("k", 10)
    headline = [("RMSE", report["rmse"]), ("MAE", report["mae"]), (f"Precision@{k}", report.get(f"precision@{k}")),
                (f"Recall@{k}", report.get(f"recall@{k}")), (f"NDCG@{k}", report.get(f"ndcg@{k}")),
                (f"MAP@{k}", report.get(f"map@{k}")), ("Coverage", report.get("coverage")),
                ("Mean popularity of recommendations", report.get("mean_popularity"))]
    slices = report.get("slices", {})

    def histogram(axis):
        edges = np.linspace(-4, 4, 33)
        axis.bar(edges[:-1], report["error_histogram"], width=edges[1] - edges[0], align="edge", color="#4c72b0")
        axis.set_xlabel("predicted - actual rating")
        axis.set_ylabel("ratings")
        axis.set_title("Prediction errors")

    def by_slice(axis):
        names = [name.replace("genre=", "") for name in slices if name.startswith("genre=")]
        values = [slices[f"genre={name}"]["rmse"] for name in names]
        axis.barh(names, values, color="#55a868")
        axis.axvline(report["rmse"], color="black", linestyle="--", linewidth=1, label="overall")
        axis.set_xlabel("RMSE")
        axis.set_title("RMSE by genre")
        axis.legend(loc="lower right")
        axis.tick_params(axis="y", labelsize=7)

    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{_number(value)}</td></tr>" for name, value in headline)
    slice_rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{data['rows']:,}</td><td>{_number(data['rmse'])}</td></tr>"
        for name, data in slices.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .8em;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.gate{{padding:.8em 1em;border-left:.5em solid #999;background:#f2f2f2}}.gate.blessed{{border-color:#2e7d32;background:#e8f5e9}}
.gate.rejected{{border-color:#c62828;background:#ffebee;color:#7f0000}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{_card_html(card) if card is not None else ""}
<p>{html.escape(str(report.get("scored", "")))}: {report["rows"]:,} ratings, {report.get("ranked_users", 0):,} users ranked over the full catalogue.</p>
<table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<img alt="error histogram" src="data:image/png;base64,{_plot_png(histogram)}">
<h2>Slices</h2>
<table><tr><th>slice</th><th>ratings</th><th>RMSE</th></tr>{slice_rows}</table>
<img alt="RMSE by genre" src="data:image/png;base64,{_plot_png(by_slice)}">
</body></html>
"""


def _number(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
