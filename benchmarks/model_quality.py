"""Model quality on MovieLens 100K, every model next to the popularity baseline, one run.

Protocols:
- RMSE: seeded 5-fold random CV (the protocol of the published Surprise table:
  SVD 0.934, SVD++ 0.919, baseline 0.944);
- ranking: per-user time holdout (each user's last 20% of ratings are the test set;
  movies ranked over everything the user did not rate in training; relevant = test rating
  >= 4; users with at least one relevant test rating count), and, for honesty, a global
  time cutoff (80% of ratings before it) where fewer users remain to evaluate.

Goals: best RMSE <= 0.905; TensorFlow RMSE <= 0.915; best NDCG@10 >= 1.5x popularity on
the per-user time holdout; one TensorFlow fit on 80,000 ratings under 60 s.

    .venv/bin/python benchmarks/model_quality.py [--folds 5] [--models a,b,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from reelops.console import print_table  # noqa: E402
from reelops.data import kfold_split, time_split, user_time_holdout, validate_source  # noqa: E402
from reelops.evaluation import ranking_metrics, rmse  # noqa: E402
from reelops.models import ALGORITHMS, make_model  # noqa: E402

ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ML100K))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--models", default=",".join(ALGORITHMS))
    args = parser.parse_args()
    if not (Path(args.data) / "u.data").is_file():
        sys.exit(f"benchmarks/model_quality.py: ml-100k not found at {args.data}")
    data = validate_source(args.data)
    ratings, users, movies = data.ratings, data.users, data.movies
    folds = kfold_split(ratings, args.folds, seed=0)
    holdout_train, holdout_test = user_time_holdout(ratings, 0.2)
    cutoff_train, cutoff_test = time_split(ratings, quantile=0.8)

    rows, results = [], {}
    for name in args.models.split(","):
        fold_rmse, fit_seconds = [], []
        for train, test in folds:
            model = make_model(name)
            started = time.perf_counter()
            model.fit(train, users=users, movies=movies)
            fit_seconds.append(time.perf_counter() - started)
            fold_rmse.append(rmse(model.predict(test), test["rating"]))
        ranked = make_model(name).fit(holdout_train, users=users, movies=movies)
        holdout = ranking_metrics(ranked, holdout_test, k=10)
        cut = ranking_metrics(make_model(name).fit(cutoff_train, users=users, movies=movies), cutoff_test, k=10)
        results[name] = {"rmse": float(np.mean(fold_rmse)), "ndcg": holdout["ndcg@10"], "fit": float(np.mean(fit_seconds))}
        rows.append([name, float(np.mean(fold_rmse)), holdout["ndcg@10"], holdout["precision@10"], holdout["coverage"],
                     holdout["ranked_users"], cut["ndcg@10"], cut["ranked_users"], float(np.mean(fit_seconds))])
        print(f"  done: {name}", file=sys.stderr)

    print_table(rows, ["model", f"RMSE ({args.folds}-fold)", "NDCG@10 (user time)", "P@10 (user time)", "coverage",
                       "users", "NDCG@10 (global cut)", "users", "fit s (80k)"],
                title="benchmarks/model_quality.py on ml-100k (one run)")
    popularity = results.get("popularity", {}).get("ndcg")
    best_rmse = min(r["rmse"] for n, r in results.items())
    print(f"\nbest RMSE {best_rmse:.4f} (goal <= 0.905): {'met' if best_rmse <= 0.905 else 'NOT met'}")
    if "tensorflow" in results:
        tf = results["tensorflow"]
        print(f"TensorFlow RMSE {tf['rmse']:.4f} (goal <= 0.915): {'met' if tf['rmse'] <= 0.915 else 'NOT met'}; "
              f"fit {tf['fit']:.1f} s (goal < 60 s): {'met' if tf['fit'] < 60 else 'NOT met'}")
    if popularity:
        best = max(r["ndcg"] for r in results.values())
        print(f"best NDCG@10 / popularity = {best / popularity:.2f}x (goal >= 1.5x): {'met' if best >= 1.5 * popularity else 'NOT met'}")


if __name__ == "__main__":
    main()
