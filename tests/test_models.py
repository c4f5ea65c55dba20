"""Features, recommenders and evaluation on small simulated worlds (and ml-100k when present)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from reelops.cli import main
from reelops.data import ingest, user_time_holdout, validate_source
from reelops.evaluation import (
    average_precision_at_k, evaluate, mae, ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k, rmse,
)
from reelops.features import build_features
from reelops.models import ALGORITHMS, DEFAULT_ALGORITHM, POPULARITY, SIDE_FEATURES, load_model, make_model
from reelops.simulate import simulate

FAST = {"sklearn-mf": {"epochs": 30}, "hybrid": {"epochs": 30}, "tensorflow": {"epochs": 25}}


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    simulate("none", seed=3, out=folder / "world", n_users=300, n_movies=400)
    return validate_source(folder / "world")


@pytest.fixture(scope="module")
def default_world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("default")
    simulate("none", seed=21, out=folder / "world")
    return validate_source(folder / "world")


def _split(data):
    train, test = user_time_holdout(data.ratings, 0.2)
    return train, test


@pytest.mark.parametrize("algorithm", [name for name in ALGORITHMS if name != "random"])
def test_every_model_beats_the_global_mean(small_world, algorithm):
    train, test = _split(small_world)
    model = make_model(algorithm, **FAST.get(algorithm, {})).fit(train, users=small_world.users, movies=small_world.movies)
    global_mean = rmse(np.full(len(test), train["rating"].mean()), test["rating"])
    assert rmse(model.predict(test), test["rating"]) < global_mean


def test_random_scores_rank_below_popularity_and_answer_the_same_twice(small_world):
    """The deliberately bad model: worse than the simplest real one, but a stable answer per user."""
    train, test = _split(small_world)
    args = dict(users=small_world.users, movies=small_world.movies)
    random_scores = make_model("random", seed=3).fit(train, **args)
    popularity = make_model("popularity").fit(train, **args)
    assert ranking_metrics(random_scores, test)["ndcg@10"] < ranking_metrics(popularity, test)["ndcg@10"]
    users = test["user_id"].unique()[:5]
    first, again = random_scores.recommend(users, k=10), random_scores.recommend(users, k=10)
    assert (first.movie_ids == again.movie_ids).all()
    assert not (first.movie_ids == make_model("random", seed=4).fit(train, **args).recommend(users, k=10).movie_ids).all()


def test_factor_model_beats_bias_baseline_on_default_world(default_world):
    train, test = _split(default_world)
    baseline = make_model("baseline").fit(train, users=default_world.users, movies=default_world.movies)
    factors = make_model("sklearn-mf").fit(train, users=default_world.users, movies=default_world.movies)
    assert rmse(baseline.predict(test), test["rating"]) - rmse(factors.predict(test), test["rating"]) >= 0.03


def test_default_algorithm_passes_the_first_model_rule_on_default_world(default_world):
    train, test = _split(default_world)
    args = dict(users=default_world.users, movies=default_world.movies)
    default = make_model(DEFAULT_ALGORITHM).fit(train, **args)
    baseline = make_model("baseline").fit(train, **args)
    popularity = make_model("popularity").fit(train, **args)
    assert rmse(default.predict(test), test["rating"]) < rmse(baseline.predict(test), test["rating"])
    assert ranking_metrics(default, test)["ndcg@10"] > ranking_metrics(popularity, test)["ndcg@10"]


def test_default_algorithm_passes_the_first_model_rule_on_ml100k(ml100k):
    data = validate_source(ml100k)
    train, test = _split(data)
    args = dict(users=data.users, movies=data.movies)
    default = make_model(DEFAULT_ALGORITHM).fit(train, **args)
    assert rmse(default.predict(test), test["rating"]) < rmse(make_model("baseline").fit(train, **args).predict(test), test["rating"])
    assert ranking_metrics(default, test)["ndcg@10"] > ranking_metrics(make_model("popularity").fit(train, **args), test)["ndcg@10"]


def test_new_users_by_demographics_beat_popularity(default_world):
    ratings = default_world.ratings
    rng = np.random.default_rng(0)
    new_users = rng.choice(ratings["user_id"].unique(), size=150, replace=False)
    known = ratings[~ratings["user_id"].isin(new_users)]
    held = ratings[ratings["user_id"].isin(new_users)]
    described = default_world.users["user_id"].isin(new_users)
    # The model never sees the new users, not even their demographics: they arrive with the request.
    model = make_model(DEFAULT_ALGORITHM, epochs=10).fit(known, users=default_world.users[~described],
                                                          movies=default_world.movies)
    demographics = default_world.users[described]
    with_side = ranking_metrics(model, held, users=demographics)
    without = ranking_metrics(model, held)  # unknown ids: the popularity path
    assert with_side["ndcg@10"] > without["ndcg@10"]
    answer = model.recommend(new_users[:3], k=5, demographics=demographics)
    assert answer.paths == [SIDE_FEATURES] * 3
    assert model.recommend(new_users[:3], k=5).paths == [POPULARITY] * 3


def test_registered_user_without_ratings_is_served_by_side_features(default_world):
    ratings = default_world.ratings
    quiet = ratings["user_id"].unique()[:5]
    model = make_model("baseline").fit(ratings[~ratings["user_id"].isin(quiet)], users=default_world.users,
                                       movies=default_world.movies)
    assert model.recommend(quiet, k=5).paths == [SIDE_FEATURES] * 5


@pytest.mark.parametrize("algorithm", ["hybrid", "tensorflow"])
def test_save_load_gives_identical_answers(small_world, tmp_path, algorithm):
    train, test = _split(small_world)
    model = make_model(algorithm, **FAST.get(algorithm, {})).fit(train, users=small_world.users, movies=small_world.movies)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert np.array_equal(model.predict(test), loaded.predict(test))
    users = test["user_id"].unique()[:20]
    assert np.array_equal(model.recommend(users, k=10).movie_ids, loaded.recommend(users, k=10).movie_ids)
    description = json.loads((tmp_path / "m" / "model.json").read_text())
    assert description["algorithm"] == algorithm and len(description["git_commit"]) == 40
    assert "users" in description["feature_schema"]


def test_top_k_kernels_match_a_stable_sort_with_exclusions():
    from reelops.models import _kernels

    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, width = int(rng.integers(1, 30)), int(rng.integers(2, 50))
        k = int(rng.integers(1, width + 1))
        scores = rng.integers(0, 4, (rows, width)).astype(np.float32)  # many ties
        lengths = rng.integers(0, width, rows)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        items = np.concatenate([rng.choice(width, n, replace=False) for n in lengths]).astype(np.int64)
        users = np.where(rng.random(rows) < 0.3, -1, np.arange(rows))  # -1: nothing excluded
        masked = scores.copy()
        for row in range(rows):
            if users[row] >= 0:
                masked[row, items[indptr[row]: indptr[row + 1]]] = -np.inf
        expected = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        for kernel in (_kernels.top_k_rows, _kernels.top_k_rows_parallel):
            top, top_scores = np.empty((rows, k), np.int64), np.empty((rows, k), np.float32)
            short = kernel(scores.copy(), indptr, items, users, k, top, top_scores)
            assert np.array_equal(top, expected)
            assert short == int(np.isneginf(np.take_along_axis(masked, expected, 1)[:, -1]).sum())
            assert np.array_equal(top_scores, np.take_along_axis(masked, expected, 1))


@pytest.mark.parametrize("algorithm", ["hybrid", "sklearn-mf"])
def test_one_user_at_a_time_matches_the_batch(small_world, algorithm):
    """Serving ranks one user on the calling thread; batches go parallel: same answers."""
    model = make_model(algorithm, **FAST.get(algorithm, {})).fit(small_world.ratings, users=small_world.users,
                                                                    movies=small_world.movies)
    users = np.concatenate([model.user_ids_[:40], [99999]])  # an unknown user among them
    batch = model.recommend(users, k=7, parallel=True)
    for row, user in enumerate(users):
        single = model.recommend([user], k=7, parallel=False)
        assert np.array_equal(single.movie_ids[0], batch.movie_ids[row]) and single.paths[0] == batch.paths[row]
        np.testing.assert_allclose(single.scores[0], batch.scores[row], rtol=1e-5)
        seen = set(model.seen_movies(user))
        assert not seen & set(single.movie_ids[0].tolist())


@pytest.mark.parametrize("algorithm", ["hybrid", "sklearn-mf", "tensorflow"])
def test_kept_known_scores_give_the_same_answers(small_world, algorithm):
    """A server keeps every known user's scores (keep_known_scores): the same answers (the
    factor models' scores come from one matrix product instead of one per request, so they
    may differ in the last float bit)."""
    model = make_model(algorithm, **FAST.get(algorithm, {})).fit(small_world.ratings, users=small_world.users,
                                                                    movies=small_world.movies)
    users = np.concatenate([model.user_ids_, [99999]])
    before = [model.recommend([user], k=7, parallel=False) for user in users] + [model.recommend(users, k=7)]
    assert model.keep_known_scores()
    after = [model.recommend([user], k=7, parallel=False) for user in users] + [model.recommend(users, k=7)]
    for old, new in zip(before, after):
        assert np.array_equal(old.movie_ids, new.movie_ids) and old.paths == new.paths
        np.testing.assert_allclose(old.scores, new.scores, rtol=1e-6)
    assert not model.keep_known_scores(max_bytes=1)  # too large for the budget: not kept


def test_asking_for_more_movies_than_are_left_pads_with_minus_one(small_world):
    """k = the whole catalogue: what a user rated is left out, and the tail says so."""
    model = make_model("hybrid", **FAST["hybrid"]).fit(small_world.ratings, users=small_world.users,
                                                        movies=small_world.movies)
    users = model.user_ids_[:5]
    everything = len(model.movie_ids_)
    batch = model.recommend(users, k=everything, parallel=False)
    for row, user in enumerate(users):
        single = model.recommend([user], k=everything)
        n_seen = len(model.seen_movies(user))
        for answer in (single.movie_ids[0], batch.movie_ids[row]):
            assert (answer == -1).sum() == n_seen and (answer[everything - n_seen:] == -1).all()
        assert np.isnan(single.scores[0, everything - n_seen:]).all()
        assert set(single.movie_ids[0][: everything - n_seen]) == set(model.movie_ids_) - set(model.seen_movies(user))
        record = single.to_records()[0]
        assert len(record["movie_ids"]) == len(record["scores"]) == everything - n_seen


def test_unknown_ids_get_answers_with_their_path(small_world):
    model = make_model("baseline").fit(small_world.ratings, users=small_world.users, movies=small_world.movies)
    ratings, paths = model.predict_ratings([1, 99999, 1], [1, 1, 99999])
    assert np.isfinite(ratings).all() and paths == ["personal", "popularity", "popularity"]
    described = pd.DataFrame({"user_id": [99999], "age": [22], "gender": ["F"], "occupation": ["student"]})
    _, paths = model.predict_ratings([99999], [1], demographics=described)
    assert paths == [SIDE_FEATURES]
    answer = model.recommend([1], k=5, exclude_rated=True)
    assert not set(answer.movie_ids[0]) & set(model.seen_movies(1))


def test_features_come_from_training_rows_only(small_world):
    train, test = _split(small_world)
    features = build_features(train, small_world.users, small_world.movies)
    activity = features.users.set_index("user_id")["activity"]
    assert activity.sum() == len(train)
    popularity = features.movies.set_index("movie_id")["popularity"]
    assert popularity.sum() == len(train)
    assert set(features.users["age_band"]) <= {"<18", "18-24", "25-34", "35-44", "45-55", "56+"}


def test_metrics_match_hand_computed_examples():
    assert rmse([3, 4], [1, 4]) == pytest.approx(np.sqrt(2))
    assert mae([3, 4, 5], [1, 4, 4]) == pytest.approx(1.0)
    recommended, relevant = [5, 1, 7, 3], {1, 3, 9}
    assert precision_at_k(recommended, relevant, 4) == pytest.approx(0.5)
    assert recall_at_k(recommended, relevant, 4) == pytest.approx(2 / 3)
    # hits at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3) + 1/log2(4)
    assert ndcg_at_k(recommended, relevant, 4) == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3) + 0.5))
    # precision at the hits: 1/2 and 2/4, over min(3, 4) relevant
    assert average_precision_at_k(recommended, relevant, 4) == pytest.approx((0.5 + 0.5) / 3)


def test_importing_models_does_not_import_tensorflow():
    code = "import sys, reelops.models, reelops.evaluation; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_train_and_evaluate_commands(tmp_path, capsys):
    simulate("none", seed=4, out=tmp_path / "world", n_users=200, n_movies=300)
    version = ingest(tmp_path / "world").version
    assert main(["train", "--data", version, "--algorithm", "sklearn-mf", "--param", "epochs=10",
                 "--out", str(tmp_path / "model"), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["holdout"]["kind"] == "user-time-20" and trained["parameters"]["epochs"] == 10
    assert main(["evaluate", "--model-dir", str(tmp_path / "model"), "--data", version, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "map@10"):
        assert isinstance(report[key], float)
    assert report["rows"] == trained["holdout"]["test_rows"]
    html = (tmp_path / "model" / "evaluation.html").read_text()
    assert "data:image/png;base64," in html and "RMSE by genre" in html
    assert main(["train", "--data", version, "--algorithm", "bogus", "--out", str(tmp_path / "x")]) != 0


def test_models_follow_the_scikit_learn_estimator_protocol(small_world):
    from sklearn.base import clone

    model = make_model("sklearn-mf", epochs=5, n_factors=8)
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert copy.set_params(epochs=3).epochs == 3
    train, test = _split(small_world)
    fitted = copy.fit(train, users=small_world.users, movies=small_world.movies)
    assert -1.0 < fitted.score(test) < 1.0
    with pytest.raises(ValueError, match="invalid parameter 'epoch'"):
        model.set_params(epoch=1)


def test_training_fits_on_the_features_step_tables_and_refuses_other_ones(tmp_path):
    from reelops.training import train
    from reelops.steps import engineer_features

    simulate("none", seed=4, out=tmp_path / "world", n_users=200, n_movies=300)
    result = ingest(tmp_path / "world")
    provenance = engineer_features(str(result.path), str(tmp_path / "features"), "user-time-20")
    assert provenance["dataset_version"] == result.version and provenance["holdout"] == "user-time-20"
    # The tables the model is fitted on are the features step's, read back, not rebuilt.
    users = pd.read_parquet(tmp_path / "features" / "user_features.parquet")
    users.loc[0, "occupation"] = "astronaut"
    users.to_parquet(tmp_path / "features" / "user_features.parquet", index=False)
    fed = train(result.path, tmp_path / "fed", "hybrid", parameters={"epochs": 5}, features=tmp_path / "features")
    own = train(result.path, tmp_path / "own", "hybrid", parameters={"epochs": 5})
    assert "astronaut" in set(fed.features_.users["occupation"]) and "astronaut" not in set(own.features_.users["occupation"])
    assert fed.metadata_["dataset_store"] == result.path.parent.as_uri() == own.metadata_["dataset_store"]
    with pytest.raises(ValueError, match="split user-time-20, but training uses dataset .* split none"):
        train(result.path, tmp_path / "other", "hybrid", holdout="none", features=tmp_path / "features")
    assert not (tmp_path / "other").exists()
