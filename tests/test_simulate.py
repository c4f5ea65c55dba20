"""The synthetic world: determinism, realism, scenarios that change only what they should,
learnability and the oracle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reelops.cli import main
from reelops.data import validate_source
from reelops.data.layouts import GENRES
from reelops.simulate import Scenario, World, WorldConfig, compare_worlds, realism_stats, simulate

# ml-100k's published statistics (the numbers), so realism is checked without the data.
ML100K_STATS = {
    "star_shares": [0.061, 0.114, 0.271, 0.342, 0.212], "mean_rating": 3.53, "density": 0.063,
    "gini_movie_popularity": 0.629, "gini_user_activity": 0.472, "median_users_per_1000": 24.0,
}


@pytest.fixture(scope="module")
def worlds():
    """Default-size worlds of one seed under each scenario (generated once per module)."""
    cache = {}

    def get(scenario, seed=11, strength=1.0):
        key = (scenario, seed, strength)
        if key not in cache:
            world = World(WorldConfig(), Scenario.parse(scenario, strength), seed)
            cache[key] = (world, world.generate())
        return cache[key]

    return get


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    config = dict(n_users=120, n_movies=200)
    simulate("taste_shift", seed=3, out=tmp_path / "a", **config)
    simulate("taste_shift", seed=3, out=tmp_path / "b", **config)
    simulate("taste_shift", seed=4, out=tmp_path / "c", **config)
    for name in ("u.data", "u.user", "u.item", "u.genre", "u.occupation", "scenario.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "u.data").read_bytes() != (tmp_path / "c" / "u.data").read_bytes()


def test_output_is_read_by_reelops_data_unchanged(tmp_path):
    description = simulate("none", seed=1, out=tmp_path / "w", n_users=100, n_movies=150)
    validated = validate_source(tmp_path / "w")
    assert validated.total_quarantined == 0
    assert len(validated.ratings) == description["counts"]["ratings"]
    scenario = json.loads((tmp_path / "w" / "scenario.json").read_text())
    assert scenario["scenario"] == "none" and scenario["events"] == []


def test_default_world_is_realistic(worlds):
    world, tables = worlds("none")
    rows = compare_worlds(realism_stats(tables["ratings"], 943, 1682), ML100K_STATS)
    failing = [(name, round(sim, 4), real) for name, sim, real, _, ok in rows if not ok]
    assert not failing


def test_compare_command_against_real_ml100k(ml100k, tmp_path, capsys):
    simulate("none", seed=5, out=tmp_path / "w")
    assert main(["simulate", "compare", str(tmp_path / "w"), str(ml100k)]) == 0
    out = capsys.readouterr().out
    assert "10 of 10 checks pass" in out and "Gini of user activity" in out


def _distinct_user_ages(world, ratings, after: bool):
    mask = ratings["timestamp"] >= world.onset if after else ratings["timestamp"] < world.onset
    users = np.unique(ratings.loc[mask, "user_id"])
    return world.users["age"][users - 1]


def test_population_shift_moves_ages_and_none_does_not(worlds):
    world, tables = worlds("population_shift")
    before = _distinct_user_ages(world, tables["ratings"], after=False)
    after = _distinct_user_ages(world, tables["ratings"], after=True)
    assert stats.ks_2samp(before, after).pvalue < 0.001
    assert after.mean() < before.mean() - 4
    world, tables = worlds("none")
    before = _distinct_user_ages(world, tables["ratings"], after=False)
    after = _distinct_user_ages(world, tables["ratings"], after=True)
    assert stats.ks_2samp(before, after).pvalue > 0.01


def _genre_counts(world, movie_ids):
    return world.movie_genres[np.asarray(movie_ids) - 1].sum(axis=0)


def test_taste_shift_changes_ratings_only(worlds):
    world, tables = worlds("taste_shift")
    ratings = tables["ratings"]
    after = ratings["timestamp"] >= world.onset
    # Who shows up: ages of distinct users before and after look alike.
    assert stats.ks_2samp(_distinct_user_ages(world, ratings, False), _distinct_user_ages(world, ratings, True)).pvalue > 0.01
    # What they watch: the genre mix of rated movies is the same as in the unshifted world.
    base_world, base_tables = worlds("none")
    assert np.array_equal(base_tables["ratings"][["user_id", "movie_id", "timestamp"]].to_numpy(),
                          ratings[["user_id", "movie_id", "timestamp"]].to_numpy())
    # How they rate: affected users' ratings of the shifted genres move in the shift's direction.
    shift = world.taste_shift
    for genre, direction in zip(shift["genres"], shift["direction"]):
        in_genre = world.movie_genres[ratings["movie_id"].to_numpy() - 1, genre] > 0
        affected = shift["affected"][ratings["user_id"].to_numpy() - 1]
        rows = in_genre & affected & after.to_numpy()
        moved = ratings.loc[rows, "rating"].mean() - base_tables["ratings"].loc[rows, "rating"].mean()
        assert moved * direction > 0.3, (GENRES[genre], moved)
    # Before onset the two worlds are identical.
    assert ratings.loc[~after, "rating"].equals(base_tables["ratings"].loc[~after, "rating"])


def test_new_releases_enter_after_onset(worlds):
    world, tables = worlds("new_releases")
    ratings = tables["ratings"]
    first_new = world.n_base_movies + 1
    new = ratings["movie_id"] >= first_new
    assert not (new & (ratings["timestamp"] < world.onset)).any()
    share = new[ratings["timestamp"] >= world.onset].mean()
    assert 0.25 < share < 0.35
    assert len(tables["movies"]) == int(round(1.2 * 1682))


def test_popularity_shock_concentrates_one_title(worlds):
    world, tables = worlds("popularity_shock")
    ratings = tables["ratings"]
    shock = world.shock_movie + 1
    before = (ratings.loc[ratings["timestamp"] < world.onset, "movie_id"] == shock).mean()
    after = (ratings.loc[ratings["timestamp"] >= world.onset, "movie_id"] == shock).mean()
    assert after > 10 * max(before, 1e-4)
    top_after = ratings.loc[ratings["timestamp"] >= world.onset, "movie_id"].value_counts().index[0]
    assert top_after == shock


def test_strength_scales_the_change(worlds):
    full, _ = worlds("taste_shift")
    half, _ = worlds("taste_shift", strength=0.5)
    assert np.abs(half.taste_shift["delta"]).sum() < 0.4 * np.abs(full.taste_shift["delta"]).sum()


def test_combination_has_both_events(tmp_path):
    description = simulate("population_shift+new_releases", seed=2, out=tmp_path / "w", n_users=150, n_movies=200)
    assert [e["name"] for e in description["events"]] == ["population_shift", "new_releases"]
    with pytest.raises(ValueError, match="unknown scenario"):
        Scenario.parse("taste_drift")


def _bias_baseline_rmse(train, test, reg=5.0):
    mean = train["rating"].mean()
    user_bias = (train.assign(r=train["rating"] - mean).groupby("user_id")["r"].sum()
                 / (train.groupby("user_id").size() + reg))
    residual = train["rating"] - mean - train["user_id"].map(user_bias)
    item_bias = residual.groupby(train["movie_id"]).sum() / (train.groupby("movie_id").size() + reg)
    predicted = mean + test["user_id"].map(user_bias).fillna(0) + test["movie_id"].map(item_bias).fillna(0)
    return float(np.sqrt(np.mean((np.clip(predicted, 1, 5) - test["rating"]) ** 2))), float(
        np.sqrt(np.mean((mean - test["rating"]) ** 2)))


def test_world_is_learnable_and_oracle_matches_noise(worlds):
    world, tables = worlds("none")
    ratings = tables["ratings"]
    cut = int(0.8 * len(ratings))
    baseline, global_mean = _bias_baseline_rmse(ratings.iloc[:cut], ratings.iloc[cut:])
    assert global_mean - baseline >= 0.05
    args = (ratings["user_id"], ratings["movie_id"], ratings["timestamp"])
    oracle_rmse = np.sqrt(np.mean((world.expected_rating(*args) - ratings["rating"]) ** 2))
    implied = np.sqrt(np.mean(world.rating_variance(*args)))
    assert abs(oracle_rmse - implied) <= 0.1 * implied


def test_oracle_reproduces_generated_ratings(worlds):
    world, tables = worlds("taste_shift")
    ratings = tables["ratings"]
    again = world.rating(ratings["user_id"], ratings["movie_id"], ratings["timestamp"])
    assert np.array_equal(again, ratings["rating"].to_numpy())
    rebuilt = World(world.config, world.scenario, world.seed)
    assert np.array_equal(rebuilt.rating(ratings["user_id"], ratings["movie_id"], ratings["timestamp"]), again)


def test_oracle_from_directory_and_request_stream(tmp_path):
    simulate("population_shift", seed=9, out=tmp_path / "w", n_users=200, n_movies=300)
    world = World.from_directory(tmp_path / "w")
    data = pd.read_csv(tmp_path / "w" / "u.data", sep="\t", names=["user_id", "movie_id", "rating", "timestamp"])
    assert np.array_equal(world.rating(data["user_id"], data["movie_id"], data["timestamp"]), data["rating"])
    requests = world.request_stream(world.start, world.end)
    assert len(requests) > 100 and requests["timestamp"].is_monotonic_increasing
    joined = world.users["joined"][requests["user_id"].to_numpy() - 1]
    assert (joined <= requests["timestamp"].to_numpy()).all()
    cohort = world.users["cohort"][requests["user_id"].to_numpy() - 1]
    assert not cohort[requests["timestamp"].to_numpy() < world.onset].any()
    assert requests.equals(world.request_stream(world.start, world.end))


def test_simulate_command(tmp_path, capsys):
    assert main(["simulate", "--scenario", "taste_shift", "--users", "150", "--movies", "200", "--seed", "7",
                 "--out", str(tmp_path / "w"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["events"][0]["name"] == "taste_shift" and result["counts"]["users"] == 150
    assert main(["simulate", "--scenario", "bogus", "--out", str(tmp_path / "x")]) == 1
    assert "unknown scenario 'bogus'" in capsys.readouterr().err
