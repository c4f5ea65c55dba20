"""Regression tests for what broke when reelops was used as a user uses it (issue 15).

Every command runs as its own ``reelops`` process, the way a user types it, against the
three kinds of tracking store the README offers: the workspace's sqlite store (nothing
set), a sqlite store the user names, and a real MLflow tracking server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reelops.data import ingest
from reelops.gate import run_gate
from reelops.training import train
from reelops.simulate import simulate
from tests.servers import free_port, mlflow_server as start_mlflow_server

REELOPS = str(Path(sys.executable).parent / "reelops")


def reelops(*words, env: dict, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    """One ``reelops`` command in its own process."""
    result = subprocess.run([REELOPS, *map(str, words)], capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert result.returncode == 0, f"reelops {' '.join(map(str, words))}: {result.stderr[-3000:]}"
    return result


def as_json(*words, env: dict) -> dict:
    return json.loads(reelops(*words, "--json", env=env).stdout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The failure's stderr, which must be exactly one ``reelops: error:`` line."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("reelops: error: "), result.stderr[-3000:]
    return lines[0]



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small world, its dataset version, a weak model and three strong ones blessed against it."""
    root = tmp_path_factory.mktemp("user-paths")
    saved = os.environ.get("REELOPS_WORKSPACE")
    os.environ["REELOPS_WORKSPACE"] = str(root / "setup-workspace")
    try:
        simulate("none", seed=11, out=root / "world", n_users=200, n_movies=300)
        version = ingest(root / "world", store=root / "datasets").version
        data = root / "datasets" / version
        train(data, root / "weak", "baseline")
        strong = []
        for seed in range(3):
            folder = root / f"strong{seed}"
            train(data, folder, "hybrid", parameters={"epochs": 10, "seed": seed})
            assert run_gate(folder, data, production_dir=root / "weak")["decision"] == "blessed"
            strong.append(folder)
    finally:
        if saved is None:
            os.environ.pop("REELOPS_WORKSPACE", None)
        else:
            os.environ["REELOPS_WORKSPACE"] = saved
    return {"root": root, "data": data, "version": version, "weak": root / "weak", "strong": strong}


@pytest.fixture
def user_env(tmp_path) -> dict:
    """The environment of a user's shell: a workspace of its own, no tracking URI chosen."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "REELOPS_LOCAL_MLFLOW_URI", "PYTHONPATH")}
    env["REELOPS_WORKSPACE"] = str(tmp_path / "user-workspace")
    return env


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 with its own backend store and artifact root."""
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(params=["user sqlite", "tracking server"])
def store_env(request, user_env, tmp_path) -> dict:
    """The tracking stores the README offers besides the default: the workspace's own sqlite
    store is what every other test here uses, its commands each in their own process too."""
    if request.param == "user sqlite":
        user_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'own-store' / 'mlflow.db'}"
        (tmp_path / "own-store").mkdir()
    elif request.param == "tracking server":
        user_env["MLFLOW_TRACKING_URI"] = request.getfixturevalue("mlflow_server")["url"]
    user_env["REELOPS_TEST_STORE_KIND"] = request.param
    return user_env


# ------------------------------------------------------------------ item 1 is tests/test_packaging.py


# ------------------------------------------------------------------ items 2, 3, 4, 9: the registry, store by store


def test_registry_commands_each_in_its_own_process_on_every_store(models, store_env, tmp_path):
    """register, list, show, lineage, promote, rollback, history; gate enforced; idempotent."""
    first, second = models["strong"][0], models["strong"][1]
    registered = as_json("registry", "register", first, env=store_env)
    assert registered["created"] and registered["alias"] == "production" and registered["blessed"]
    again = as_json("registry", "register", first, env=store_env)  # item 9: same content, same version
    assert not again["created"] and again["version"] == registered["version"]
    never_gated = as_json("registry", "register", models["weak"], env=store_env)
    assert never_gated["alias"] is None and not never_gated["blessed"] and "never gated" in never_gated["gate"]
    refused = reelops("registry", "promote", never_gated["version"], env=store_env, check=False)  # item 4
    assert "not blessed" in one_line_error(refused) and "--force --reason" in refused.stderr
    canary = as_json("registry", "register", second, env=store_env)
    assert canary["alias"] == "canary"
    assert as_json("registry", "promote", canary["version"], "--reason", "canary held", env=store_env)["aliases"] == {
        "production": canary["version"], "previous": registered["version"]}
    # item 2: rollback in a fresh process used to wait 300 s on its own lock
    started = time.monotonic()
    assert as_json("registry", "rollback", env=store_env)["aliases"] == {
        "production": registered["version"], "previous": canary["version"]}
    assert time.monotonic() - started < 60
    listed = as_json("registry", "list", env=store_env)
    assert {row["version"] for row in listed["versions"]} == {registered["version"], never_gated["version"],
                                                                canary["version"]}
    shown = as_json("registry", "show", registered["version"], env=store_env)
    assert shown["dataset_version"] == models["version"] and shown["blessed"] and shown["gate_decision"] == "blessed"
    lineage = as_json("registry", "lineage", "--dataset", models["version"], env=store_env)
    assert len(lineage["versions"]) == 3
    moves = [(entry["alias"], entry["to"]) for entry in as_json("registry", "history", env=store_env)["history"]]
    assert moves == [("production", registered["version"]), ("canary", canary["version"]),
                     ("previous", registered["version"]), ("production", canary["version"]), ("canary", None),
                     ("production", registered["version"]), ("previous", canary["version"])]
    if store_env["REELOPS_TEST_STORE_KIND"] == "user sqlite":  # item 3: the user's store, not the workspace's
        assert (tmp_path / "own-store" / "mlflow.db").is_file()
        assert not (Path(store_env["REELOPS_WORKSPACE"]) / "mlflow" / "mlflow.db").exists()


def test_forced_promotion_is_explicit_recorded_and_serves_under_its_alias(models, user_env):
    """item 4: --force needs --reason; the override is in the history; serve checks the blessing."""
    weak = as_json("registry", "register", models["weak"], env=user_env)["version"]
    missing_reason = reelops("registry", "promote", weak, "--force", env=user_env, check=False)
    assert "--reason" in one_line_error(missing_reason)
    refused = reelops("serve", "--model-alias", "production", env=user_env, check=False)
    assert "no version" in one_line_error(refused)
    as_json("registry", "promote", weak, "--force", "--reason", "incident 42: strong model misbehaves", env=user_env)
    entry = as_json("registry", "history", env=user_env)["history"][-1]
    assert entry["override"] is True and entry["to"] == weak and "incident 42" in entry["reason"]
    assert "OVERRIDE: incident 42" in reelops("registry", "history", env=user_env).stdout
    assert as_json("registry", "show", weak, env=user_env)["gate_decision"] == "none"
    # The override covers the alias it was given for, and nothing else.
    assert _serve_until_ready(["--model-alias", "production"], user_env) == "ready"
    strong = as_json("registry", "register", models["strong"][0], env=user_env)
    assert strong["alias"] == "canary"
    as_json("registry", "promote", strong["version"], "--reason", "fixed", env=user_env)
    previous = reelops("serve", "--model-alias", "previous", env=user_env, check=False)
    assert f"version {weak} is not blessed" in one_line_error(previous)
    # A model directory is judged by its own blessing, bound to its content.
    unblessed = reelops("serve", "--model-dir", models["weak"], "--port", free_port(), env=user_env, check=False)
    assert "refusing to serve" in one_line_error(unblessed) and "--allow-unblessed" in unblessed.stderr


def test_a_copied_blessing_blesses_nothing_else(models, user_env, tmp_path):
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(models["weak"], forged)
    shutil.copy(models["strong"][0] / "blessing.json", forged / "blessing.json")
    result = as_json("registry", "register", forged, env=user_env)
    assert result["alias"] is None and not result["blessed"] and "other model content" in result["gate"]
    served = reelops("serve", "--model-dir", forged, "--port", free_port(), env=user_env, check=False)
    assert "other model content" in one_line_error(served)


def _serve_until_ready(words, env, timeout=120) -> str:
    import httpx

    port = free_port()
    process = subprocess.Popen([REELOPS, "serve", *map(str, words), "--port", str(port), "--no-grpc"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/v1/models/movie-recommender", timeout=2).status_code == 200:
                    return "ready"
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        return f"exited {process.poll()}: {process.stderr.read()[-2000:] if process.poll() is not None else 'timeout'}"
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def test_serve_accepts_a_blessed_model_and_an_unblessed_one_only_when_told(models, user_env):
    assert _serve_until_ready(["--model-dir", models["strong"][0]], user_env) == "ready"
    assert _serve_until_ready(["--model-dir", models["weak"], "--allow-unblessed"], user_env) == "ready"


def test_storage_uri_of_an_unblessed_model_ends_the_server_in_one_line(models, user_env):
    outcome = _serve_until_ready(["--storage-uri", models["weak"].as_uri()], user_env)
    assert outcome.startswith("exited 1") and "refusing to serve" in outcome


def test_two_at_once_alias_changes_serialise_and_keep_every_history_entry(models, user_env):
    """item 2: every subcommand in its own process, two at a time."""
    versions = [as_json("registry", "register", folder, env=user_env)["version"] for folder in models["strong"]]
    # v1 production; v2, then v3, canary (the canary moves to the newest blessed version)
    before = len(as_json("registry", "history", env=user_env)["history"])
    pairs = [
        (["registry", "promote", versions[1], "--reason", "a"], ["registry", "promote", versions[2], "--reason", "b"]),
        (["registry", "rollback"], ["registry", "list"]),
        (["registry", "show", versions[0]], ["registry", "history"]),
        (["registry", "lineage", "--dataset", models["version"]], ["registry", "rollback"]),
    ]
    with ThreadPoolExecutor(2) as pool:
        for left, right in pairs:
            outcomes = list(pool.map(lambda words: reelops(*words, env=user_env, check=False), [left, right]))
            for words, outcome in zip((left, right), outcomes):
                assert outcome.returncode == 0, f"{words}: {outcome.stderr[-2000:]}"
    final = as_json("registry", "list", env=user_env)
    aliases = {alias: row["version"] for row in final["versions"] for alias in row["aliases"]}
    v1, v2, v3 = versions
    # The two serial orders of the promotions (each rollback swaps production and previous,
    # and there are two): v2 then v3, or v3 then v2.
    assert aliases in ({"production": v3, "previous": v2}, {"production": v2, "previous": v3})
    # Moves in either order: promote v2 (previous, production) and promote v3 (previous,
    # production, canary removed) make 5; each rollback makes 2.
    added = final["history"][before:]
    assert len(added) == 5 + 2 + 2 and all(entry["reason"] and entry["time"] for entry in added)
    assert [entry["alias"] for entry in added][-4:] == ["production", "previous", "production", "previous"]


# ------------------------------------------------------------------ item 3: a pipeline on the user's own sqlite store


def test_training_pipeline_registers_into_a_users_own_sqlite_store(user_env, tmp_path):
    user_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mine.db'}"
    reelops("pipeline", "run", "training", "--param", "source=simulate:scenario=none,seed=3,users=200,movies=300",
            env=user_env, timeout=600)
    listed = as_json("registry", "list", env=user_env)
    assert [row["aliases"] for row in listed["versions"]] == [["production"]]
    assert not (Path(user_env["REELOPS_WORKSPACE"]) / "mlflow" / "mlflow.db").exists()


# ------------------------------------------------------------------ item 5: an empty dataset never reaches production


def test_empty_ratings_are_refused_at_ingest_naming_the_file(models, user_env, tmp_path):
    import shutil

    source = tmp_path / "empty"
    shutil.copytree(models["root"] / "world", source)
    (source / "u.data").write_text("")
    message = one_line_error(reelops("data", "ingest", source, env=user_env, check=False))
    assert "u.data holds no valid rating" in message
    assert not any((Path(user_env["REELOPS_WORKSPACE"]) / "datasets").glob("ds-*"))


def test_train_is_atomic_and_register_refuses_an_incomplete_model(models, user_env, tmp_path):
    import pandas as pd

    empty = tmp_path / "empty-version"
    empty.mkdir()
    for name in ("ratings", "users", "movies"):
        frame = pd.read_parquet(models["data"] / f"{name}.parquet")
        (frame.iloc[:0] if name == "ratings" else frame).to_parquet(empty / f"{name}.parquet", index=False)
    manifest = json.loads((models["data"] / "manifest.json").read_text())
    (empty / "manifest.json").write_text(json.dumps({**manifest, "version": "ds-empty"}))
    message = one_line_error(reelops("train", "--data", empty, "--out", tmp_path / "model", env=user_env, check=False))
    assert "no ratings to train on" in message
    assert not (tmp_path / "model").exists() and not list(tmp_path.glob(".model-*"))
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.json").write_text((models["weak"] / "model.json").read_text())
    refused = one_line_error(reelops("registry", "register", half, env=user_env, check=False))
    assert "not a complete, loadable model" in refused and "arrays.npz" in refused


# ------------------------------------------------------------------ item 6: one line, --debug for the rest


def test_failures_are_one_line_and_debug_shows_the_traceback(models, user_env, tmp_path):
    archive = tmp_path / "world.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in ("u.data", "u.item", "u.user"):
            bundle.write(models["root"] / "world" / name, name)
    damaged = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as bundle:
        info = bundle.getinfo("u.data")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 200
    damaged[start:start + 8] = bytes(byte ^ 0xFF for byte in damaged[start:start + 8])
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    message = one_line_error(reelops("data", "ingest", tmp_path / "damaged.zip", env=user_env, check=False))
    assert "member 'u.data' is damaged" in message
    debug = reelops("--debug", "data", "ingest", tmp_path / "damaged.zip", env=user_env, check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and debug.stderr.strip().endswith(message)
    with_variable = reelops("data", "ingest", tmp_path / "damaged.zip", env={**user_env, "REELOPS_DEBUG": "1"},
                            check=False)
    assert "Traceback" in with_variable.stderr


def test_registry_lock_timeout_is_one_line(models, user_env):
    workspace = Path(user_env["REELOPS_WORKSPACE"])
    (workspace / "mlflow").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
        "print('held', flush=True); time.sleep(120)"), str(workspace / "mlflow" / "registry.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = reelops("registry", "list", env={**user_env, "REELOPS_REGISTRY_LOCK_TIMEOUT": "1"}, check=False)
        assert "held the registry lock for more than 1 s" in one_line_error(result)
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------ item 7: leftovers after kill -9


def _running_runs(database: Path) -> list:
    if not database.is_file():
        return []
    try:
        with sqlite3.connect(database, timeout=0.2) as connection:
            return [row[0] for row in connection.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'")]
    except sqlite3.Error:
        return []


def test_register_killed_midway_is_cleaned_up_by_the_next_register(models, user_env):
    database = Path(user_env["REELOPS_WORKSPACE"]) / "mlflow" / "mlflow.db"
    reelops("registry", "list", env=user_env)  # the store exists, so the kill lands in the upload
    process = subprocess.Popen([REELOPS, "registry", "register", models["strong"][0]], env=user_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _running_runs(database) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # the run has just started; logging it takes seconds
    process.wait()
    assert _running_runs(database), "no run was left RUNNING by the killed process"
    result = reelops("registry", "register", models["strong"][1], env=user_env)
    assert "cleaned up: run" in result.stdout and "marked KILLED" in result.stdout
    assert _running_runs(database) == []
    versions = as_json("registry", "list", env=user_env)["versions"]
    assert all(row["complete"] for row in versions)


def _writer(store: Path) -> subprocess.Popen:
    """A process writing a dataset version into ``store`` the way ingest does, then waiting."""
    code = ("import sys, time\nfrom reelops.staging import staging_folder\n"
            "with staging_folder(sys.argv[1], 'ds-0000-') as path:\n"
            "    (path / 'ratings.parquet').write_bytes(b'x' * 1000)\n"
            "    print(path, flush=True)\n    time.sleep(300)\n")
    return subprocess.Popen([sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE, text=True)


def test_ingest_cleans_staging_folders_of_killed_writers_only(models, user_env, tmp_path):
    store = tmp_path / "store"
    killed, alive = _writer(store), _writer(store)
    killed_path, alive_path = Path(killed.stdout.readline().strip()), Path(alive.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    try:
        assert killed_path.is_dir() and alive_path.is_dir()
        result = reelops("data", "ingest", models["root"] / "world", "--out", store, env=user_env)
        assert f"cleaned up: {killed_path}" in result.stdout
        assert not killed_path.exists() and alive_path.is_dir()
        # Folders follow the umask (a shared store needs group and other read access).
        version = next(store.glob("ds-*"))
        assert stat.S_IMODE(version.stat().st_mode) == 0o777 & ~_umask()
    finally:
        alive.kill()
        alive.wait()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------ item 8: options that would switch checks off


@pytest.mark.parametrize("value", ["nan", "-1", "2", "inf"])
def test_max_bad_share_outside_zero_to_one_is_a_usage_error(models, user_env, value):
    result = reelops("data", "ingest", models["root"] / "world", "--max-bad-share", value, env=user_env, check=False)
    assert result.returncode == 2 and "not a share between 0 and 1" in result.stderr


def test_the_share_in_the_message_has_enough_digits_to_be_true(models, user_env, tmp_path):
    import shutil

    source = tmp_path / "source"
    shutil.copytree(models["root"] / "world", source)
    lines = (source / "u.data").read_text().splitlines()
    for index in range(round(len(lines) * 0.028)):
        lines[index] = lines[index].replace("\t", "\tx", 1)
    (source / "u.data").write_text("\n".join(lines) + "\n")
    counts = as_json("data", "validate", source, "--max-bad-share", "1", env=user_env)
    share = counts["quarantined"] / counts["read"]
    limit = share * (1 - 1e-5)  # below the share, but the same to one decimal of a percent
    assert f"{share:.1%}" == f"{limit:.1%}"
    message = one_line_error(reelops("data", "ingest", source, "--max-bad-share", repr(limit), env=user_env,
                                     check=False))
    shown_share, shown_limit = message.split("rows are bad (")[1].split(")")[0].split(" > limit ")
    assert float(shown_share.rstrip("%")) > float(shown_limit.rstrip("%"))


# ------------------------------------------------------------------ issue 18: no silent fallback in a cluster pod


def test_a_step_in_a_pod_without_a_tracking_server_fails_naming_the_secret(models, user_env, tmp_path):
    import shutil

    pod = {**user_env, "KFP_POD_NAME": "reelops-training-x7k2p-gate"}
    candidate = shutil.copytree(models["strong"][0], tmp_path / "candidate")
    message = one_line_error(reelops("gate", "--model-dir", candidate, "--data", models["data"], env=pod, check=False))
    assert "reelops-training-x7k2p-gate has no MLFLOW_TRACKING_URI" in message and "reelops-mlflow" in message
    step = subprocess.run([sys.executable, "-c", "import sys; from reelops.steps import register_model; "
                           "register_model(sys.argv[1], 'training', 'run-1')", str(candidate)],
                          env=pod, capture_output=True, text=True, timeout=120)
    assert step.returncode != 0 and "StoreNotConfigured" in step.stderr.strip().splitlines()[-1]
    assert not (Path(user_env["REELOPS_WORKSPACE"]) / "mlflow" / "mlflow.db").exists()


def test_a_step_in_a_pod_without_a_dataset_store_fails_naming_the_secret(models, user_env, tmp_path):
    pod = {**user_env, "KFP_POD_NAME": "reelops-training-x7k2p-validate", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    pod.pop("REELOPS_STORE", None)
    world = models["root"] / "world"
    message = one_line_error(reelops("data", "ingest", world, env=pod, check=False))
    assert "reelops-training-x7k2p-validate has no REELOPS_STORE" in message and "reelops-object-store" in message
    step = subprocess.run([sys.executable, "-c", "import sys; from reelops.steps import validate_raw; "
                           "validate_raw(sys.argv[1], sys.argv[2], 0.01)", str(world), str(tmp_path / "out")],
                          env=pod, capture_output=True, text=True, timeout=120)
    assert step.returncode != 0 and "has no REELOPS_STORE" in step.stderr.strip().splitlines()[-1]
    assert not (Path(user_env["REELOPS_WORKSPACE"]) / "datasets").exists() and not (tmp_path / "out").exists()
