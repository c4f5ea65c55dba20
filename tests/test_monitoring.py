"""Drift detectors on simulated scenarios, bad input, saved references and the policy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from reelops.cli import main
from reelops.data import ingest, user_time_holdout
from reelops.models import make_model
from reelops.training import train
from reelops.monitoring import Monitor, MonitoringInputError, monitor_dataset, time_windows
from reelops.monitoring.policy import PolicyState, RetrainingPolicy, decide
from reelops.registry import TriggerState
from reelops.simulate import Scenario, World, WorldConfig, simulate

CUT = 0.55


@pytest.fixture(scope="module")
def setup(monitored_world):
    """A model and its monitor trained on the first 55% of a default unchanged world (conftest)."""
    return monitored_world


def _stream(setup, scenario):
    world = World(WorldConfig(), Scenario.parse(scenario), setup["seed"])
    tables = world.generate()
    return world, tables, tables["ratings"][tables["ratings"]["timestamp"] >= setup["cut"]].reset_index(drop=True)


def _post_onset_findings(setup, scenario, windows=4):
    world, tables, stream = _stream(setup, scenario)
    start = int((stream["timestamp"] < world.onset).sum())
    setup["monitor"].reset()
    return [setup["monitor"].check(stream.iloc[start + i * 1000: start + (i + 1) * 1000], tables["users"], tables["movies"], seed=i)
            for i in range(windows)]


def test_population_shift_is_data_drift_in_user_features(setup):
    findings = _post_onset_findings(setup, "population_shift")
    assert sum(f.detectors["user_data_drift"].drift for f in findings) >= 3
    assert all(f.verdict in ("data", "both") for f in findings if f.detectors["user_data_drift"].drift)
    p_values = findings[0].detectors["user_data_drift"].p_values
    assert set(p_values) == {"age", "gender", "occupation"}


def test_findings_report_sizes_and_an_alarm_needs_a_material_change(setup):
    monitor = setup["monitor"]
    findings = _post_onset_findings(setup, "population_shift", windows=2)
    result = findings[1].detectors["user_data_drift"]
    assert set(result.sizes) == set(result.p_values) and all(0 <= v <= 1 for v in result.sizes.values())
    assert result.p_value == pytest.approx(min(1.0, 3 * min(result.p_values.values())))
    assert result.drift and max(result.sizes.values()) >= 0.1
    movie = findings[1].detectors["movie_data_drift"]
    assert {"age_at_rating", "genre", "popularity_band", "unseen_titles"} <= set(movie.sizes)
    # The same significant change, with a materiality no change can reach: reported, no alarm.
    from reelops.monitoring.monitor import Materiality

    world, tables, stream = _stream(setup, "population_shift")
    start = int((stream["timestamp"] < world.onset).sum()) + 1000
    window = stream.iloc[start: start + 1000]
    saved = monitor.materiality
    try:
        monitor.materiality = Materiality(share=1.01)
        quiet = monitor.check(window, tables["users"], tables["movies"], seed=1).detectors["user_data_drift"]
    finally:
        monitor.materiality = saved
    assert min(quiet.p_values.values()) < quiet.threshold and not quiet.drift
    assert "significant but not material" in quiet.note


def test_calibrated_p_values_scale_with_the_measured_dispersion():
    from scipy import stats

    from reelops.monitoring.statistics import chi_square_calibrated, dispersion, ks_calibrated

    assert chi_square_calibrated(12.0, 4, 1.0) == pytest.approx(stats.chi2.sf(12.0, 4))
    assert chi_square_calibrated(12.0, 4, 2.0) == pytest.approx(stats.chi2.sf(6.0, 4))
    rng = np.random.default_rng(1)
    left, right = rng.normal(size=60), rng.normal(0.5, 1, size=900)
    textbook = stats.ks_2samp(left, right, mode="asymp")
    assert ks_calibrated(textbook.statistic, 60, 900, 1.0) == pytest.approx(textbook.pvalue, rel=0.05)
    assert ks_calibrated(textbook.statistic, 60, 900, 3.0) > textbook.pvalue
    assert dispersion([2.0, 4.0]) == 3.0 and dispersion([0.01]) == 0.5 and dispersion([]) == 1.0


def test_the_backtest_calibrates_the_model_tests(setup):
    """A copy of the model, trained on the earlier training period and monitored on the rest,
    measures how the model's own tests vary when nothing changed."""
    reference = setup["monitor"].reference
    backtest = reference["backtest"]
    assert set(backtest["dispersion"]) == {"predicted_rating", "mean_abs_error", "errors_by_genre_within_user"}
    assert backtest["windows"] >= 5 and all(count >= 1 for count in backtest["windows_used"].values())
    errors = reference["errors"]["personal"]
    assert errors["dispersion"] == backtest["dispersion"]
    assert errors["mean_abs_expected"] == pytest.approx(errors["mean_abs"] + backtest["mean_abs_error_rise"])
    assert reference["calibration"]["prediction_drift"]["dispersion"] == [backtest["dispersion"]["predicted_rating"]]
    # Too short a training period for a backtest: said, and the tests keep their textbook form.
    tables = World(WorldConfig(n_users=60, n_movies=80), Scenario.parse("none"), 3).generate()
    ratings = tables["ratings"].iloc[:3000]
    train_rows, heldout = user_time_holdout(ratings, 0.2)
    model = make_model("hybrid", epochs=5).fit(train_rows, users=tables["users"], movies=tables["movies"])
    small = Monitor(model).build(train_rows, heldout, tables["users"], tables["movies"])
    assert "windows after the backtest's cut" in small.reference["backtest"]["skipped"]
    assert "dispersion" not in small.reference["errors"]["personal"]


def test_a_reference_from_an_older_reelops_is_refused(setup, tmp_path):
    folder = setup["monitor"].save(tmp_path / "monitoring")
    reference = json.loads((folder / "reference.json").read_text())
    reference.pop("version")
    (folder / "reference.json").write_text(json.dumps(reference))
    with pytest.raises(ValueError, match="retrain"):
        Monitor.load(setup["monitor"].model, folder)


def test_new_releases_move_movie_features(setup):
    findings = _post_onset_findings(setup, "new_releases")
    flags = [f.detectors["movie_data_drift"].drift for f in findings]
    assert any(flags[:2]) and sum(flags) >= 2  # caught within 2,000 ratings, and again after


def test_unchanged_world_rarely_alarms(setup):
    _, tables, stream = _stream(setup, "none")
    setup["monitor"].reset()
    findings = [setup["monitor"].check(w, tables["users"], tables["movies"], seed=i)
                for i, w in enumerate(time_windows(stream)[:30])]
    assert sum(f.verdict != "none" for f in findings) <= 4
    decision = decide(findings, new_labels=len(stream), data_time=int(stream["timestamp"].max()),
                      state=PolicyState())
    assert not decision.retrain


def test_bad_windows_are_counted_not_crashed(setup):
    monitor = setup["monitor"]
    _, tables, stream = _stream(setup, "none")
    window = stream.iloc[:1000].copy()
    with pytest.raises(MonitoringInputError, match="missing column\\(s\\) movie_id"):
        monitor.check(window.drop(columns=["movie_id"]), tables["users"], tables["movies"])
    broken = window.copy()
    broken.loc[broken.index[:10], "user_id"] = np.nan
    broken.loc[broken.index[10:20], "rating"] = np.nan
    users = tables["users"].copy()
    first_users = broken["user_id"].dropna().unique()[:3]
    users.loc[users["user_id"].isin(first_users), "occupation"] = "astronaut"  # never seen in training
    users.loc[users["user_id"] == broken["user_id"].dropna().unique()[3], "age"] = np.nan
    findings = monitor.check(broken, users, tables["movies"])
    assert findings.dropped_rows == {"missing_or_bad_ids": 10, "unlabelled_rows": 10}
    unjudged = findings.detectors["user_data_drift"].unjudged
    assert unjudged["unknown_category"] == 3 and unjudged["missing_age"] == 1
    no_demographics = monitor.check(window, users=None, movies=tables["movies"])
    assert not no_demographics.detectors["user_data_drift"].available
    assert no_demographics.detectors["user_data_drift"].unjudged["users_without_demographics"] > 0


def test_saved_reference_reloads_and_gives_the_same_result(setup, tmp_path):
    monitor = setup["monitor"]
    monitor.save(tmp_path / "monitoring")
    assert (tmp_path / "monitoring" / "user_data_drift" / "config.toml").is_file()
    reloaded = Monitor.load(monitor.model, tmp_path / "monitoring")
    world, tables, stream = _stream(setup, "population_shift")
    window = stream.iloc[5000:6000]
    monitor.reset()  # the same stream position for both: no running evidence from earlier tests
    first = monitor.check(window, tables["users"], tables["movies"], seed=3).to_dict()
    second = reloaded.check(window, tables["users"], tables["movies"], seed=3).to_dict()
    assert first == second
    # Each detector keeps its own level (model drift judges a few hundred errors a window).
    assert reloaded.level("model_drift") == monitor.level("model_drift") > reloaded.level("user_data_drift")
    assert first["detectors"]["model_drift"]["threshold"] == pytest.approx(
        monitor.level("model_drift") / len(first["detectors"]["model_drift"]["p_values"]))


def test_policy_needs_labels_and_holds_its_cooldown(setup):
    findings = _post_onset_findings(setup, "population_shift", windows=4)
    state = PolicyState()
    policy = RetrainingPolicy(min_alarm_windows=2, cooldown_seconds=3 * 86_400)
    now = int(findings[-1].end_timestamp)
    assert not decide(findings, new_labels=500, data_time=now, policy=policy, state=state).retrain
    first = decide(findings, new_labels=5000, data_time=now, policy=policy, state=state)
    assert first.retrain
    again = decide(findings, new_labels=5000, data_time=now + 86_400, policy=policy, state=state)
    assert not again.retrain and any("cooldown" in reason for reason in again.reasons)
    later = decide(findings, new_labels=5000, data_time=now + 4 * 86_400, policy=policy, state=state)
    assert later.retrain


def test_policy_state_lives_in_the_registry(setup, tmp_path):
    """Two processes see the same cooldown: the state is a tag of the registered model."""
    findings = _post_onset_findings(setup, "population_shift", windows=3)
    now = int(findings[-1].end_timestamp)
    assert decide(findings, new_labels=5000, data_time=now, state=TriggerState()).retrain
    code = "from reelops.registry import TriggerState; print(TriggerState().load()['last_trigger_data_time'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out.strip()) == now
    assert not decide(findings, new_labels=5000, data_time=now + 3600, state=TriggerState()).retrain


def test_importing_monitoring_does_not_import_tensorflow():
    code = ("import sys; from reelops.monitoring.backend import alibi; alibi(); "
            "print('tensorflow' in sys.modules and sys.modules['tensorflow'] is not None)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_monitor_command_on_a_trained_model(tmp_path, capsys):
    simulate("none", seed=2, out=tmp_path / "early", n_users=400, n_movies=500, until=CUT)
    simulate("population_shift", seed=2, out=tmp_path / "later", n_users=400, n_movies=500)
    version = ingest(tmp_path / "early").version
    train(version, tmp_path / "model", parameters={"epochs": 10})
    assert (tmp_path / "model" / "monitoring" / "reference.json").is_file()
    # Two bad rows in the raw source: set aside and counted, never silently dropped.
    with open(tmp_path / "later" / "u.data", "a") as ratings:
        ratings.write("5\t3\tx\t893000000\n7\t99999\t4\t893000001\n")
    assert main(["monitor", "--model-dir", str(tmp_path / "model"), "--data", str(tmp_path / "later"), "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["summary"]["user_data_drift"]["alarms"] >= 1
    assert isinstance(output["decision"]["retrain"], bool) and output["decision"]["reasons"]
    assert output["input"]["quarantined"] == 2
    assert output["input"]["quarantine_reasons"] == {"bad value": 1, "unknown movie": 1}
    assert main(["monitor", "--model-dir", str(tmp_path / "model"), "--data", str(tmp_path / "later")]) == 0
    out = capsys.readouterr().out
    assert "user_data_drift" in out and "decision:" in out and "2 quarantined" in out


def _genre_window(rng, n_users=20, rows_per_user=25, n_genres=19, lean_genre=None, lean=0.0, affected_share=0.4):
    """Errors of a window of sessions: a bias per user, noise, and optionally a lean on one genre."""
    users = np.repeat(np.arange(n_users), rows_per_user)
    flags = rng.random((len(users), n_genres)) < 0.2
    flags[:, 0] = False  # ``unknown``
    errors = rng.normal(0.0, 0.6, n_users)[users] + rng.normal(0.0, 0.9, len(users))
    if lean_genre is not None:
        affected = (rng.random(n_users) < affected_share)[users]
        errors = errors + lean * (affected & flags[:, lean_genre])
    return errors, flags, users


def test_within_user_genre_test_is_calibrated_and_catches_a_lean():
    from reelops.monitoring.statistics import within_user_genre_test

    rng = np.random.default_rng(0)
    no_lean = np.zeros(18)
    null = [within_user_genre_test(*_genre_window(rng), no_lean) for _ in range(300)]
    # Under "no change" the p-values are about uniform: neither silent nor alarming.
    assert 0.02 <= np.mean(np.array(null) < 0.05) <= 0.09
    assert 0.35 <= np.mean(np.array(null) < 0.5) <= 0.65
    # Users whose errors move by a star on one genre are caught at the detector's level.
    shifted = [within_user_genre_test(*_genre_window(rng, lean_genre=4, lean=1.0, affected_share=1.0), no_lean)
               for _ in range(20)]
    assert np.mean(np.array(shifted) < 0.001) >= 0.9
    # The same lean already present in the reference is no change.
    reference = no_lean.copy()
    reference[3] = 1.0  # genre 4, counted without ``unknown``
    stale = [within_user_genre_test(*_genre_window(rng, lean_genre=4, lean=1.0, affected_share=1.0), reference)
             for _ in range(100)]
    assert np.mean(np.array(stale) < 0.05) <= 0.1
    # Too little to judge is said, not turned into a p-value.
    errors, flags, users = _genre_window(rng, n_users=3, rows_per_user=2)
    assert within_user_genre_test(errors, flags, users, no_lean) is None


def test_a_window_nothing_could_judge_is_unjudged_not_none(setup):
    window = pd.DataFrame({"user_id": ["x", None, "y"], "movie_id": [1, 2, None], "rating": [4.0, 3.0, 5.0],
                           "timestamp": [1, 2, 3]})
    findings = setup["monitor"].check(window)
    assert findings.verdict == "unjudged" and findings.dropped_rows == {"missing_or_bad_ids": 3}
    assert not any(result.available for result in findings.detectors.values())


def test_fewer_ratings_than_a_window_are_one_partial_window(setup):
    _, tables, stream = _stream(setup, "population_shift")
    users, movies = tables["users"], tables["movies"]
    result = monitor_dataset(setup["monitor"], stream.iloc[-300:], users, movies)
    summary = result["summary"]
    assert summary["partial_window"] and summary["ratings"] == summary["ratings_judged"] == 300
    for name in ("user_data_drift", "movie_data_drift", "prediction_drift", "model_drift"):
        first = summary[name]["first_alarm_after_ratings"]
        assert first is None or first <= 300  # never more ratings than were seen
    full = monitor_dataset(setup["monitor"], stream.iloc[:2500], users, movies)["summary"]
    assert not full["partial_window"] and full["ratings_judged"] == 2000 and full["ratings"] == 2500


def test_personal_genre_leans_are_calibrated_by_earlier_windows_and_not_taken_for_a_change():
    """Each user keeps a lean by genre the model did not learn, window after window: the
    running genre statistic's textbook p-values alarm on it; divided by the dispersion that
    earlier windows of the same users show (as the backtest measures it), with the windows'
    correlation counted, they are honest. The moment estimate of the leans' spread (what
    benchmarks/taste_shift_ceiling.py models instead) finds the spread they were drawn with."""
    from scipy import stats

    from reelops.monitoring.statistics import (chi_square_calibrated, dispersion, genre_evidence, genre_lean_change,
                                               independent_windows, personal_lean_spread)

    rng = np.random.default_rng(4)
    n_users, rows = 30, 25
    users = np.repeat(np.arange(n_users), rows)
    personal = rng.normal(0.0, 0.3, (n_users, 19))  # a spread of 0.09 stars squared per genre

    def window():
        flags = rng.random((len(users), 19)) < 0.2
        flags[:, 0] = False
        return (flags * personal[users]).sum(axis=1) + rng.normal(0.0, 0.8, len(users)), flags

    errors, flags = window()
    assert 0.04 < personal_lean_spread(errors, flags, users, np.zeros(18)) < 0.16

    def stream(windows):
        monitor, statistics = Monitor(model=None, evidence_decay=0.4), []
        for _ in range(windows):
            monitor._running_evidence = monitor._add_evidence(monitor._running_evidence,
                                                              genre_evidence(*window(), users, np.zeros(18)))
            statistics.append(genre_lean_change(monitor._running_evidence)[:2])
        return statistics

    earlier = stream(60)
    factor = dispersion([statistic / dof for statistic, dof in earlier])
    independent = independent_windows(60, 0.4)
    later = stream(200)
    textbook = np.array([stats.chi2.sf(statistic, dof) for statistic, dof in later])
    calibrated = np.array([chi_square_calibrated(statistic, dof, factor, independent) for statistic, dof in later])
    assert factor > 1.3 and np.mean(textbook < 0.05) > 0.2  # the textbook covariance alarms on personal leans
    # Persistent leans make neighbouring windows alike, so 60 of them measure the dispersion
    # roughly: the calibrated p-values may err on the conservative side, never the other.
    assert np.mean(calibrated < 0.05) <= 0.1
