"""MLflow tracking and registry, lineage, aliases with history, rollback and the gate,
each on a fresh store in the test's own workspace."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reelops import registry
from reelops.buildinfo import git_commit
from reelops.cli import main
from reelops.data import ingest
from reelops.gate import Thresholds, is_blessed, run_gate
from reelops.training import train
from reelops.simulate import simulate

STRONG = {"epochs": 20}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset and three model directories: strong, another strong, and a weak one."""
    root = tmp_path_factory.mktemp("registry")
    os.environ["REELOPS_WORKSPACE"] = str(root / "setup-workspace")
    simulate("none", seed=5, out=root / "world", n_users=250, n_movies=350)
    version = ingest(root / "world", store=root / "datasets").version
    data = root / "datasets" / version
    train(data, root / "strong", "hybrid", parameters=STRONG)
    train(data, root / "strong2", "hybrid", parameters={**STRONG, "seed": 1})
    train(data, root / "weak", "baseline")
    return {"root": root, "data": data, "version": version}


def _copy(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_gate_blesses_first_model_against_baselines_and_registers_production(trained, tmp_path):
    model = _copy(trained["root"] / "strong", tmp_path / "strong")
    blessing = run_gate(model, trained["data"])
    assert blessing["decision"] == "blessed" and blessing["compared_with"]["kind"] == "baselines"
    assert set(blessing["metrics"]) == {"candidate", "bias_baseline", "popularity_baseline"}
    result = registry.register(model)
    assert {key: result[key] for key in ("version", "alias", "blessed", "created")} == {
        "version": "1", "alias": "production", "blessed": True, "created": True}


def test_gate_rejects_a_worse_candidate_with_reasons_and_it_gets_no_alias(trained, tmp_path):
    strong = _copy(trained["root"] / "strong", tmp_path / "strong")
    run_gate(strong, trained["data"])
    registry.register(strong)
    weak = _copy(trained["root"] / "weak", tmp_path / "weak")
    blessing = run_gate(weak, trained["data"])
    assert blessing["decision"] == "rejected" and blessing["compared_with"] == {"kind": "production", "version": "1"}
    assert any("RMSE" in reason for reason in blessing["reasons"])
    assert any("NDCG@10" in reason for reason in blessing["reasons"])
    assert not is_blessed(weak)
    assert registry.register(weak)["alias"] is None
    better = _copy(trained["root"] / "strong2", tmp_path / "strong2")
    assert run_gate(better, trained["data"], Thresholds(rmse_tolerance=0.05, ndcg_relative_drop=0.5))["decision"] == "blessed"
    assert registry.register(better)["alias"] == "canary"
    rows = {row["version"]: row for row in registry.list_versions()}
    assert rows["1"]["aliases"] == ["production"] and rows["2"]["aliases"] == [] and rows["3"]["aliases"] == ["canary"]


def test_the_model_report_names_the_version_commit_source_and_what_the_gate_decided(trained, tmp_path):
    """A rejected model's page does not look like a blessed one's: the gate's decision, reasons and
    comparison, the registry version, commit and data source, rendered again after registration."""
    import json

    strong = _copy(trained["root"] / "strong", tmp_path / "strong")
    before = (strong / "evaluation.html").read_text()
    assert "Not gated" in before and "not registered" in before
    run_gate(strong, trained["data"])
    assert "Blessed by the gate" in (strong / "evaluation.html").read_text()
    first = registry.register(strong)
    blessed_page = (strong / "evaluation.html").read_text()
    commit = json.loads((strong / "model.json").read_text())["git_commit"]
    assert f"version {first['version']} (alias production)" in blessed_page and commit in blessed_page
    assert str(trained["root"] / "world") in blessed_page and "bias baseline" in blessed_page
    weak = _copy(trained["root"] / "weak", tmp_path / "weak")
    run_gate(weak, trained["data"])
    second = registry.register(weak)
    rejected_page = (weak / "evaluation.html").read_text()
    assert "REJECTED by the gate" in rejected_page and "Blessed" not in rejected_page
    assert 'class="gate rejected"' in rejected_page and "RMSE" in rejected_page
    assert f"production (version {first['version']})" in rejected_page
    assert f"movie-recommender version {second['version']}" in rejected_page
    # The page logged with the registration run is the rendered one.
    logged = registry.client().download_artifacts(second["run_id"], "model_dir/evaluation.html", str(tmp_path / "dl"))
    assert "REJECTED by the gate" in Path(logged).read_text()


def test_promote_then_rollback_restores_production_with_history(trained, tmp_path):
    for name in ("strong", "strong2"):
        model = _copy(trained["root"] / name, tmp_path / name)
        run_gate(model, trained["data"], Thresholds(rmse_tolerance=1.0, ndcg_relative_drop=1.0, cold_rmse_tolerance=1.0))
        registry.register(model)
    assert registry.promote("2", reason="canary looked good") == {"production": "2", "previous": "1"}
    assert registry.rollback(reason="bad clicks") == {"production": "1", "previous": "2"}
    moves = [(entry["alias"], entry["from"], entry["to"]) for entry in registry.history()]
    assert moves == [("production", None, "1"), ("canary", None, "2"), ("previous", None, "1"), ("production", "1", "2"),
                     ("canary", "2", None), ("production", "2", "1"), ("previous", "1", "2")]
    assert all(entry["time"] and entry["reason"] for entry in registry.history())
    with pytest.raises(registry.RegistryError, match="already production"):
        registry.promote("1")


def test_lineage_show_and_pyfunc_by_alias(trained, tmp_path):
    import mlflow

    model = _copy(trained["root"] / "strong", tmp_path / "strong")
    run_gate(model, trained["data"])
    registry.register(model)
    shown = registry.show("1")
    assert shown["dataset_version"] == trained["version"] and shown["git_commit"] == git_commit()
    assert shown["gate_decision"] == "blessed" and "rmse" in shown["metrics"]
    assert [row["version"] for row in registry.lineage(trained["version"])] == ["1"]
    assert registry.lineage("ds-0000000000000000") == []
    loaded = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}@production")
    frame = pd.DataFrame({"user_id": [1, 2, 99999], "movie_id": [1, 2, 3]})
    predictions = loaded.predict(frame)
    assert len(predictions) == 3 and ((predictions >= 1) & (predictions <= 5)).all()
    local, version = registry.load_by_alias("production")
    assert version == "1" and local.predict(frame).tolist() == pytest.approx(list(predictions))


def test_failure_in_the_middle_of_registration_leaves_no_alias(trained, tmp_path, monkeypatch):
    import mlflow

    model = _copy(trained["root"] / "strong", tmp_path / "strong")
    run_gate(model, trained["data"])

    def fail_after_the_artifacts(*args, **kwargs):  # the model directory is uploaded by then
        raise registry.RegistryError("injected failure after artifact upload")

    with monkeypatch.context() as patch:
        patch.setattr(mlflow.pyfunc, "log_model", fail_after_the_artifacts)
        with pytest.raises(registry.RegistryError, match="injected failure"):
            registry.register(model)
    assert registry.list_versions() == [] and "production" not in registry.aliases()
    assert registry.register(model)["alias"] == "production"


def _register_in_subprocess(model_dir: str, workspace: str) -> dict:
    env = {**os.environ, "REELOPS_WORKSPACE": workspace}
    result = subprocess.run([sys.executable, "-m", "reelops.cli", "registry", "register", model_dir, "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("initialised", [True, False])
def test_two_processes_register_at_once(trained, tmp_path, workspace, initialised):
    models = []
    for name in ("strong", "strong2"):
        model = _copy(trained["root"] / name, tmp_path / name)
        run_gate(model, trained["data"], production_dir=trained["root"] / "weak")  # blessed against a weak model
        assert is_blessed(model)
        models.append(str(model))
    if initialised:
        registry.client()  # migrations done before the race
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_register_in_subprocess, [(m, str(workspace)) for m in models])
    assert sorted(r["alias"] for r in results) == ["canary", "production"]
    rows = registry.list_versions()
    assert len(rows) == 2 and all(row["complete"] for row in rows)
    assert sorted(a for row in rows for a in row["aliases"]) == ["canary", "production"]


def test_registry_commands_print_tables(trained, tmp_path, capsys):
    model = _copy(trained["root"] / "strong", tmp_path / "strong")
    assert main(["gate", "--model-dir", str(model), "--data", str(trained["data"])]) == 0
    assert "gate: BLESSED" in capsys.readouterr().out
    assert main(["registry", "register", str(model)]) == 0
    capsys.readouterr()
    assert main(["registry", "list"]) == 0
    out = capsys.readouterr().out
    assert "version  aliases" in out and "production" in out and trained["version"] in out and git_commit()[:10] in out
    assert main(["registry", "rollback"]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err
    assert main(["registry", "show", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset_version"] == trained["version"]
