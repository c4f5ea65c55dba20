"""``reelops run``: a movie site's model lifecycle, stage by stage, on one machine.

A simulated world (``population_shift`` by default: new kinds of users arrive at its onset)
is the site. v1 is trained on the history before the onset by the training pipeline
(kfp.local), gated and registered, and deployed blue-green on the local serving plane with a
drift detector beside it. Page views (the world's ratings as rating requests, each rating sent
back as delayed feedback) are replayed through the plane at a steady rate, from a little
before the onset on; the detector judges windows of them and, once the policy decides, its
trigger claims the decision and starts the training pipeline on the site's ratings through the
drift. The retrained v2 (gated against v1) goes out as a canary that the automatic analysis
promotes or rolls back while home-page traffic (top-10 requests, the oracle's ratings of what
was recommended) flows. The batch-scoring pipeline scores every user with the production model,
and a TensorFlow challenger trained on v1's data watches the same traffic in shadow.

Each stage has a time budget; a stage that fails or runs over it ends with its reason and the
stages that do not need its result still run. Whatever happened is recorded and rendered
into one HTML report (:mod:`reelops.lifecycle.report`).

Every run is a site of its own: a new workspace folder ``<workspace>/lifecycle/run-<time>``
(registry, datasets, pipelines, serving plane), so a run never meets an earlier run's
production model or retraining cooldown. What does not depend on the site is reused from
``<workspace>/lifecycle/cache`` and said so: the simulated world, v1's gated candidate (it was
gated against no production, as it would be again) and the challenger's training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Page views replayed before the onset: the report shows quality and the detector's windows
# before the change too.
BEFORE_ONSET = 2_000
# The retrain reads the site's ratings through this many after the onset: more than the page
# views replayed before the detector decides (it decides within about 6,000).
RETRAIN_AFTER_ONSET = 10_000
ALGORITHM_V1 = "hybrid"
CHALLENGER = "tensorflow"
# One retrain per run is the story. The replay runs world time thousands of times faster than the
# clock (and home-page requests faster still), so the policy's cooldown in data time would pass
# before the retrained model is even deployed: v1's detector starts one run at most.
MAX_RETRAINS = 1
KEEP_RUNS = 3  # run folders kept (older ones are removed once their plane is stopped)


@dataclass(frozen=True)
class Stage:
    """One stage of the run: its name, time budget (seconds) and what it does."""

    name: str
    budget: float
    what: str


STAGES = (
    Stage("world", 60, "simulate the site: the history v1 learns from and the traffic to come"),
    Stage("train", 240, "v1: training pipeline on kfp.local (ingest, validate, features, train, evaluate, gate, "
                        "register)"),
    Stage("deploy", 150, "v1 blue-green on the local serving plane, a drift detector beside it"),
    Stage("drift", 180, "page views replayed with delayed ratings until the detector decides to retrain"),
    Stage("retrain", 300, "the training run the detector's trigger started: v2, gated against v1"),
    Stage("canary", 240, "v2 as a canary, home-page traffic with feedback, automatic analysis"),
    Stage("batch", 150, "batch-scoring pipeline with the production model"),
    Stage("shadow", 240, "a TensorFlow challenger in shadow beside production: agreement report"),
    Stage("report", 60, "the HTML report, logged to MLflow with the run"),
)


class StageFailed(RuntimeError):
    """A stage could not do its work (the message says why and where its log is)."""


class OverBudget(StageFailed):
    """A stage ran out of its time budget."""


class Skipped(StageFailed):
    """A stage whose input an earlier stage did not produce."""


@dataclass
class StageResult:
    """How one stage ended: ``done``, ``over budget``, ``failed`` or ``skipped``, and why."""

    name: str
    what: str
    budget: float
    seconds: float = 0.0
    outcome: str = "pending"
    note: str = ""
    reused: list = field(default_factory=list)


class Deadline:
    """A stage's budget as it runs down."""

    def __init__(self, stage: Stage, clock=time.monotonic):
        self.stage, self.clock = stage, clock
        self.began = clock()

    def elapsed(self) -> float:
        return self.clock() - self.began

    def remaining(self) -> float:
        return self.stage.budget - self.elapsed()

    def check(self, waiting_for: str) -> None:
        """Raise :class:`OverBudget` naming what the stage was still waiting for."""
        if self.remaining() <= 0:
            raise OverBudget(f"over its budget of {clock_text(self.stage.budget)}: {waiting_for}")


def run_stages(stages, work: dict, say=print, clock=time.monotonic, results: list | None = None) -> list:
    """Run each stage's ``work[name](deadline, result)`` in order; none stops the run.

    A stage's function returns a one-line note (or None); raising :class:`StageFailed` (or any
    error) ends that stage with the message as its reason and the next stage starts.

    Returns:
        a :class:`StageResult` per stage (appended to ``results`` as each begins, so an
        interrupted run still knows how far it got).
    """
    results = [] if results is None else results
    for stage in stages:
        result = StageResult(stage.name, stage.what, stage.budget)
        results.append(result)
        say(f"\n== {stage.name} (budget {clock_text(stage.budget)}): {stage.what}")
        deadline = Deadline(stage, clock)
        try:
            result.note = work[stage.name](deadline, result) or ""
            result.outcome = "done"
        except Skipped as why:
            result.outcome, result.note = "skipped", str(why)
        except OverBudget as why:
            result.outcome, result.note = "over budget", str(why)
        except StageFailed as why:
            result.outcome, result.note = "failed", str(why)
        except Exception as error:  # noqa: BLE001 - one stage's bug must not lose the report of the others
            result.outcome, result.note = "failed", f"{type(error).__name__}: {error}"
        except BaseException:  # Ctrl-C, SIGTERM: the run ends here, its report says where
            result.outcome, result.note = "interrupted", "the run was stopped"
            result.seconds = round(deadline.elapsed(), 1)
            raise
        result.seconds = round(deadline.elapsed(), 1)
        reused = f" (reused: {'; '.join(result.reused)})" if result.reused else ""
        say(f"   {result.outcome} in {clock_text(result.seconds)}: {result.note}{reused}")
    return results


def clock_text(seconds: float) -> str:
    """Seconds as m:ss."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Lifecycle:
    """One run of the lifecycle; :meth:`run` does it and returns the record the report is made of.

    Args:
        scenario: the world's scripted change (``reelops simulate`` names).
        seed: the world's seed.
        rate: requests per second of the replayed traffic.
        canary_percent: the canary's share of traffic.
        root: where run folders and the cache live (default ``<workspace>/lifecycle``).
        budgets: seconds per stage name, replacing the defaults of :data:`STAGES`.
        say: where progress lines go.
    """

    def __init__(self, scenario: str = "population_shift", seed: int = 3, rate: float = 150.0,
                 canary_percent: int = 30, root=None, budgets: dict | None = None, say=print):
        from reelops.workspace import workspace_dir

        self.scenario, self.seed, self.rate, self.canary_percent = scenario, int(seed), float(rate), int(canary_percent)
        self.root = Path(root or workspace_dir() / "lifecycle").resolve()
        self.cache = self.root / "cache"
        self.site = self.root / time.strftime("run-%Y%m%d-%H%M%S", time.gmtime())
        self.stages = tuple(Stage(s.name, float((budgets or {}).get(s.name, s.budget)), s.what) for s in STAGES)
        self.say = say
        self.began = time.time()
        self.current = "start"
        self.lock = threading.Lock()
        self.events: list = []  # (unix time, label) of what happened, for the report's time axes
        self.replays: dict = {}  # mode -> TrafficReplay
        self.detector_windows: dict = {}  # version -> {window index: brief}
        self.revision_versions: dict = {}
        self.canary_verdicts: list = []
        self.facts: dict = {"scenario": scenario, "seed": self.seed, "rate": self.rate,
                            "canary_percent": self.canary_percent}
        self.challenger_process = None
        self._ticker_stop = threading.Event()
        self.record: dict = {}
        self.report_path: Path | None = None
        self.detector_urls: dict = {}  # version -> its detector's URL
        self.last_detector: dict = {}  # the latest status a detector answered

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        """Every stage in order, then the record (the report stage writes it to the report)."""
        self._prune_old_runs()
        self.site.mkdir(parents=True)
        saved = {key: os.environ.get(key) for key in ("REELOPS_WORKSPACE", "MLFLOW_TRACKING_URI", "REELOPS_STORE")}
        # The site's own registry and dataset store: a tracking URI of the user's would carry an
        # earlier run's production model and retraining cooldown into this one.
        os.environ["REELOPS_WORKSPACE"] = str(self.site)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("REELOPS_STORE", None)
        self.say(f"site: {self.site} (a workspace of its own; cache: {self.cache})")
        ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        ticker.start()
        work = {"world": self._world, "train": self._train, "deploy": self._deploy, "drift": self._drift,
                "retrain": self._retrain, "canary": self._canary, "batch": self._batch, "shadow": self._shadow,
                "report": self._report}
        self.results: list = []
        try:
            run_stages(self.stages, {name: self._entered(name, fn) for name, fn in work.items()}, say=self.say,
                       results=self.results)
        finally:
            self._ticker_stop.set()
            self._shut_down()
            try:
                self._finish_report()
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        return self.record

    def _finish_report(self) -> None:
        """The report in every case: with every stage's outcome, logged to MLflow with the run."""
        from reelops.lifecycle.report import write_report

        if not self.record:  # the report stage itself failed: what can still be read
            self.record = self._collect(partial=True)
        self.record["stages"] = [asdict(r) for r in self.results]
        self.record["seconds"] = round(time.time() - self.began, 1)
        self.report_path = self.site / "report.html"
        self.record["report_path"] = str(self.report_path)
        write_report(self.record, self.report_path)
        (self.site / "lifecycle.json").write_text(json.dumps(self.record, indent=1, default=str))
        try:
            self.record["mlflow_run"] = self._log_to_mlflow()
        except Exception as error:  # noqa: BLE001 - the file is the report; MLflow keeps a copy when it can
            self.record["mlflow_run"] = None
            self.say(f"the report was not logged to MLflow: {type(error).__name__}: {error}")

    def _entered(self, name: str, function):
        def enter(deadline, result):
            self.current = name
            self._event(f"{name} begins")
            return function(deadline, result)
        return enter

    def _event(self, label: str) -> None:
        with self.lock:
            self.events.append((time.time(), label))

    # ------------------------------------------------------------------ stages

    def _world(self, deadline: Deadline, result: StageResult) -> str:
        from reelops.simulate import Scenario, World, WorldConfig, simulate

        world = World(WorldConfig(), Scenario.parse(self.scenario), self.seed)
        ratings = world.generate()["ratings"].sort_values(["timestamp", "user_id", "movie_id"], kind="stable")
        stamps = ratings["timestamp"].to_numpy()
        onset_index = int((stamps < world.onset).sum())
        span = float(world.end - world.start)
        history_share = 0.9 * (world.onset - world.start) / span
        retrain_end = int(stamps[min(len(stamps) - 1, onset_index + RETRAIN_AFTER_ONSET)])
        folder = self.cache / "worlds" / f"{self.scenario.replace('+', '_')}-seed{self.seed}"
        made = []
        for name, share in (("history", history_share), ("retrain", (retrain_end - world.start) / span)):
            target = folder / name
            if (target / "scenario.json").exists():
                result.reused.append(f"world {name} ({target})")
                continue
            partial = folder / f".{name}-partial"
            shutil.rmtree(partial, ignore_errors=True)
            simulate(self.scenario, seed=self.seed, out=partial, until=share)
            partial.rename(target)  # whole or not at all
            made.append(name)
        self.world = world
        self.history, self.retrain_data = folder / "history", folder / "retrain"
        self.replay_start = int(stamps[max(0, onset_index - BEFORE_ONSET)])
        self.canary_start = retrain_end
        self.facts.update(onset=int(world.onset), world_start=int(world.start), world_end=int(world.end),
                          history=str(self.history), retrain_data=str(self.retrain_data),
                          replay_start=self.replay_start, ratings=int(len(stamps)), onset_index=onset_index)
        return (f"{self.scenario} (seed {self.seed}): {len(stamps):,} ratings, onset after {onset_index:,}; "
                f"v1 learns from the first {history_share:.0%} of the timeline" + (f"; wrote {', '.join(made)}" if made else ""))

    def _train(self, deadline: Deadline, result: StageResult) -> str:
        from reelops import registry
        from reelops.buildinfo import git_commit

        self._need("history", "no world")
        key = _key({"source": (self.history / "scenario.json").read_text(), "commit": git_commit(),
                    "algorithm": ALGORITHM_V1})
        cached = self.cache / "models" / f"v1-{key}"
        if (cached / "candidate" / "model.json").exists():
            meta = json.loads((cached / "meta.json").read_text())
            registered = registry.register(cached / "candidate", reason="reelops run: v1 (reused candidate)",
                                           lineage={"reelops.kfp_pipeline": "reelops-training",
                                                    "reelops.kfp_run_id": meta["kfp_run_id"]})
            result.reused.append(f"v1's training and gate (pipeline run {meta['kfp_run_id']}, same world, same code)")
            shown = registry.show(registered["version"])
        else:
            answer = self._reelops(deadline, "training pipeline", "pipeline", "run", "training",
                                   "--param", f"source={self.history}", "--param", f"algorithm={ALGORITHM_V1}")
            if answer.get("state") != "SUCCEEDED":
                raise StageFailed(f"the training pipeline ended {answer.get('state')}; its log: {answer.get('log')}")
            versions = registry.list_versions()
            if not versions:
                raise StageFailed(f"the gate did not bless v1; the run: {answer.get('run_dir')}")
            registered = {"version": versions[0]["version"]}
            run_dir = Path(answer["run_dir"])
            shown = registry.show(registered["version"])
            partial = cached.with_name(cached.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(run_dir / "gate" / "candidate", partial / "candidate")
            dataset = self.site / "datasets" / shown["dataset_version"]
            if dataset.is_dir():
                shutil.copytree(dataset, partial / "dataset")
            (partial / "meta.json").write_text(json.dumps({"kfp_run_id": shown["kfp_run_id"], "run_dir": str(run_dir)}))
            shutil.rmtree(cached, ignore_errors=True)
            partial.rename(cached)
        self.v1 = str(registered["version"])
        self.v1_cache = cached
        self._event(f"v1 registered (version {self.v1})")
        return (f"version {self.v1} registered ({', '.join(shown['aliases']) or 'no alias'}), gate "
                f"{shown['gate_decision']}, dataset {shown['dataset_version']}")

    def _deploy(self, deadline: Deadline, result: StageResult) -> str:
        from reelops import deploy

        self._need("v1", "v1 was not registered")
        command = (f"{sys.executable} -m reelops.cli pipeline run training --param source={self.retrain_data} "
                   f"--param algorithm={ALGORITHM_V1} --json")
        status = deploy.deploy(self.v1, strategy=deploy.BLUE_GREEN, reason="reelops run: v1, the site's first model",
                               detector={"enabled": True, "label_wait": 2.0, "retrain_command": command,
                                         "max_retrains": MAX_RETRAINS})
        self.url = status["url"]
        self._learn_revisions(status)
        self._event("v1 serves all traffic")
        self._start_challenger(result)
        detector = status["revisions"][0].get("detector") or {}
        return f"router {self.url}; {status['revisions'][0]['revision']} (version {self.v1}) 100%, detector {detector.get('url')}"

    def _drift(self, deadline: Deadline, result: StageResult) -> str:
        from reelops import registry
        from reelops.simulate.traffic import TrafficReplay

        self._need("url", "nothing serves")
        self.replays["ratings"] = TrafficReplay(self.url, self.world, rate=self.rate, start=self.replay_start,
                                                seed=self.seed, feedback_delay=0.5, mode="ratings").start_background()
        self._event("page views begin")
        while True:
            detector = self._poll_detector(self.v1) or {}
            # The claim in the registry is what counts (a status read may miss the window that decided).
            claimed = [t for t in registry.retrain_triggers() if t.get("claim")]
            if claimed and not detector.get("retrain"):
                # Claimed between the two reads: the detector records its decision right after.
                deadline.check("the detector claimed a retrain but has not shown its decision")
                time.sleep(0.5)
                continue
            if claimed:
                retrain = detector["retrain"]
                self.retrain_decision = {**retrain, "claim": claimed[0]["claim"]}
                self._event(f"retrain decided (window {retrain.get('window')})")
                reasons = "; ".join(retrain.get("reasons") or [])
                return f"the detector decided after window {retrain.get('window')}: {reasons}"
            deadline.check(f"the detector judged {detector.get('windows_judged', 0)} windows and has not decided to "
                           f"retrain (verdicts {detector.get('verdicts')})")
            time.sleep(1.0)

    def _retrain(self, deadline: Deadline, result: StageResult) -> str:
        from reelops import registry

        self._need("retrain_decision", "the detector did not decide to retrain")
        try:
            while True:
                self._poll_detector(self.v1)
                triggers = [t for t in registry.retrain_triggers() if t.get("claim")]
                ended = [t for t in triggers if "exit_code" in t]
                if ended:
                    trigger = ended[-1]
                    break
                deadline.check(f"the training run the trigger started is still running (log: "
                               f"{(triggers[-1] if triggers else {}).get('log')})")
                time.sleep(2.0)
        finally:
            replay = self.replays.get("ratings")
            if replay is not None:
                replay.stop()
                self._event("page views end")
        self.trigger = trigger
        if trigger["exit_code"] != 0:
            raise StageFailed(f"the training run exited {trigger['exit_code']}; its log: {trigger.get('log')}")
        newer = [v for v in registry.list_versions() if int(v["version"]) > int(self.v1)]
        if not newer:
            raise StageFailed(f"the retrained model was not registered: the gate rejected it (run {trigger.get('run_id')})")
        self.v2 = str(newer[-1]["version"])
        shown = registry.show(self.v2)
        self._event(f"v2 registered (version {self.v2})")
        return (f"version {self.v2} ({', '.join(shown['aliases']) or 'no alias'}), gate {shown['gate_decision']} "
                f"against version {self.v1}, dataset {shown['dataset_version']}, run {trigger.get('run_id')}")

    def _canary(self, deadline: Deadline, result: StageResult) -> str:
        from reelops import deploy
        from reelops.deploy.analysis import CanaryPolicy

        self._need("v2", "no retrained version")
        self._home_page_traffic()
        # The analysis gives up (inconclusive, rolled back) before the stage's budget ends.
        policy = CanaryPolicy(timeout_seconds=max(10.0, deadline.remaining() - 30.0))
        self._event(f"v2 canary {self.canary_percent}%")
        final = deploy.deploy(self.v2, strategy=deploy.CANARY, percent=self.canary_percent, analysis=deploy.AUTO,
                              policy=policy, reason="reelops run: the retrained model",
                              progress=self._canary_progress, detector={"retrain_command": None})
        analysis = final.get("analysis") or {}
        self.canary_decision = analysis
        self._learn_revisions(deploy.status())
        self._event(f"canary {analysis.get('decision')}")
        return (f"{analysis.get('decision')} after {analysis.get('canary_requests', 0):,} canary requests in "
                f"{analysis.get('seconds')} s: {analysis.get('reason')}")

    def _batch(self, deadline: Deadline, result: StageResult) -> str:
        import pandas as pd

        from reelops import registry

        self._need("v1", "no registered model")
        answer = self._reelops(deadline, "batch-scoring pipeline", "pipeline", "run", "batch-scoring",
                               "--param", f"alias={registry.PRODUCTION}", "--param", "k=10")
        if answer.get("state") != "SUCCEEDED":
            raise StageFailed(f"the batch-scoring pipeline ended {answer.get('state')}; its log: {answer.get('log')}")
        predictions = Path(answer["run_dir"]) / "batch-predict" / "predictions"
        table = pd.read_parquet(predictions)
        model, _ = registry.load_by_alias(registry.PRODUCTION)
        sample = table[table["user_id"].isin(table["user_id"].unique()[:3]) & (table["rank"] <= 5)]
        self.batch = {"table": str(predictions), "rows": int(len(table)), "users": int(table["user_id"].nunique()),
                      "model_version": str(table["model_version"].iloc[0]) if "model_version" in table else None,
                      "sample": [{"user_id": int(u), "titles": [model.titles_.get(int(m), str(m)) for m in g["movie_id"]]}
                                 for u, g in sample.groupby("user_id")]}
        self._event("batch scoring done")
        return (f"{self.batch['rows']:,} recommendations for {self.batch['users']:,} users by version "
                f"{self.batch['model_version']} -> {predictions}")

    def _shadow(self, deadline: Deadline, result: StageResult) -> str:
        from reelops import deploy, registry

        self._need("url", "nothing serves")
        self._home_page_traffic()  # the comparator compares top-10 lists: what home-page requests get
        folder = self._challenger_ready(deadline, result)
        registered = registry.register(folder, reason=f"reelops run: {CHALLENGER} challenger (shadow only)")
        self.challenger = str(registered["version"])
        deploy.deploy(self.challenger, strategy=deploy.SHADOW, reason=f"reelops run: {CHALLENGER} challenger")
        self._event(f"shadow of version {self.challenger} begins")
        report = {}
        while True:
            shadow = deploy.status().get("shadow") or {}
            report = shadow.get("report") or report
            if len(report.get("windows") or []) >= 4:
                break
            if deadline.remaining() < 15:
                break  # what was compared so far is the report; the stage ends in its budget
            time.sleep(2.0)
        deploy.stop_shadow("reelops run: the report has its windows")
        self._event("shadow ends")
        self.shadow_report = report
        windows = report.get("windows") or []
        if not windows:
            raise StageFailed(f"the comparator finished no window of {report.get('window_size', 200)} requests "
                              f"(compared {report.get('compared', 0)})")
        agreement = sum(w["agreement"] or 0.0 for w in windows) / len(windows)
        return (f"version {self.challenger} ({CHALLENGER}, not gated: a shadow answers nobody) beside production: "
                f"agreement@10 {agreement:.2f} over {len(windows)} windows")

    def _report(self, deadline: Deadline, result: StageResult) -> str:
        from reelops.lifecycle.report import write_report

        self.record = self._collect()
        self.report_path = self.site / "report.html"
        write_report(self.record, self.report_path)
        return f"{self.report_path} (written again with this stage's time, then logged to MLflow)"

    # ------------------------------------------------------------------ helpers

    def _need(self, attribute: str, reason: str) -> None:
        if not hasattr(self, attribute):
            raise Skipped(reason)

    def _reelops(self, deadline: Deadline, what: str, *args) -> dict:
        """A ``reelops ... --json`` command in its own process, within the stage's budget."""
        logs = self.site / "logs"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{'-'.join(args[:3])}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "reelops.cli", *args, "--json"], stdout=subprocess.PIPE,
                                       stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.site)
            try:
                out, _ = process.communicate(timeout=max(1.0, deadline.remaining()))
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise OverBudget(f"over its budget of {clock_text(deadline.stage.budget)}: the {what} was still "
                                 f"running (stopped; its log: {log_path})") from None
        if process.returncode != 0:
            raise StageFailed(f"the {what} failed (exit {process.returncode}); its log: {log_path}")
        lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def _home_page_traffic(self) -> None:
        """Page views end (when a stage that would have ended them was skipped) and home-page
        requests begin, from the world time after the retrain's data, unless they already run."""
        from reelops.simulate.traffic import TrafficReplay

        views = self.replays.get("ratings")
        if views is not None and views.running:
            views.stop()
            self._event("page views end")
        if "recommend" not in self.replays:
            self.replays["recommend"] = TrafficReplay(self.url, self.world, rate=self.rate, start=self.canary_start,
                                                      seed=self.seed, feedback_delay=0.5).start_background()
            self._event("home-page traffic begins")

    def _start_challenger(self, result: StageResult) -> None:
        """Train the challenger in the background, on CPU time serving leaves idle, unless the cache has it."""
        from reelops.buildinfo import git_commit

        dataset = self.v1_cache / "dataset"
        self.challenger_key = self.cache / "models" / f"challenger-{_key({'dataset': str(_tree_key(dataset)), 'commit': git_commit(), 'algorithm': CHALLENGER})}"
        if (self.challenger_key / "model.json").exists():
            return
        out = self.site / "challenger"
        log = open(self.site / "challenger-train.log", "wb")
        from reelops.deploy.local import background_priority

        self.challenger_process = subprocess.Popen(
            [sys.executable, "-m", "reelops.cli", "train", "--data", str(dataset), "--algorithm", CHALLENGER,
             "--out", str(out), "--json"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=background_priority, cwd=self.site)
        self.challenger_out = out

    def _challenger_ready(self, deadline: Deadline, result: StageResult) -> Path:
        key = getattr(self, "challenger_key", None)
        if key is not None and (key / "model.json").exists():
            result.reused.append(f"the {CHALLENGER} challenger's training (same data, same code)")
            return key
        process = self.challenger_process
        if process is None:
            raise Skipped("the challenger's training never started")
        while process.poll() is None:
            deadline.check(f"the {CHALLENGER} challenger is still training (log {self.site / 'challenger-train.log'})")
            time.sleep(1.0)
        if process.returncode != 0:
            raise StageFailed(f"training the challenger failed (exit {process.returncode}); its log: "
                              f"{self.site / 'challenger-train.log'}")
        partial = self.challenger_key.with_name(self.challenger_key.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.challenger_out, partial)
        partial.rename(self.challenger_key)
        return self.challenger_key

    def _poll_detector(self, version: str) -> dict | None:
        """The detector of ``version``'s revision: its status, with each newly judged window kept."""
        import httpx

        url = self.detector_urls.get(version)
        if url is None:
            return None
        try:
            status = httpx.get(f"{url}/detector/status", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return None
        with self.lock:
            kept = self.detector_windows.setdefault(version, {})
            for window in status.get("windows") or []:
                kept[window["window"]] = window
            self.last_detector = status
        return status

    def _learn_revisions(self, status: dict) -> None:
        with self.lock:
            for revision in status.get("revisions") or []:
                self.revision_versions[revision["revision"]] = str(revision["version"])
                if revision.get("detector") and revision["detector"].get("url"):
                    self.detector_urls.setdefault(str(revision["version"]), revision["detector"]["url"])

    def _canary_progress(self, verdict: dict) -> None:
        with self.lock:
            self.canary_verdicts.append({"time": time.time(), "canary_requests": verdict.get("canary_requests", 0),
                                         "decision": verdict.get("decision"),
                                         "comparisons": verdict.get("comparisons") or []})

    def _tick(self) -> None:
        """Every 5 s, one line: the stage, the traffic split, requests served, the detector, decisions."""
        from reelops import deploy

        while not self._ticker_stop.wait(5.0):
            if self.current not in ("drift", "retrain", "canary", "batch", "shadow"):
                continue
            try:
                status = deploy.status()
            except Exception:  # noqa: BLE001 - a progress line must never end the run
                continue
            self._learn_revisions(status)
            split = " ".join(f"v{r['version']} {r['traffic']}%" for r in status.get("revisions", []) if r["traffic"])
            served = sum(len(r.stats.records) for r in self.replays.values())
            failed = sum(len(r.stats.failures()) for r in self.replays.values())
            detector = self.last_detector
            alarms = sum(v for k, v in (detector.get("verdicts") or {}).items() if k in ("data", "concept", "both"))
            line = (f"[{clock_text(time.time() - self.began)}] {self.current:<7} | {split or '-'} | "
                    f"{served:,} requests ({failed} failed)")
            if detector and self.current in ("drift", "retrain"):
                decision = "retrain" if detector.get("retrain") else "keep"
                line += f" | detector: {detector.get('windows_judged', 0)} windows, {alarms} alarmed, decision {decision}"
            if self.current == "canary" and self.canary_verdicts:
                last = self.canary_verdicts[-1]
                states = ", ".join(f"{c['metric']} {c['state']}" for c in last["comparisons"])
                line += f" | canary {last['canary_requests']:,} requests: {states}"
            if self.current == "shadow" and status.get("shadow"):
                compared = (status["shadow"].get("report") or {}).get("compared", 0)
                line += f" | shadow compared {compared:,}"
            self.say(line)

    def _shut_down(self) -> None:
        from reelops import deploy

        for replay in self.replays.values():
            replay.stop()
        if self.challenger_process is not None and self.challenger_process.poll() is None:
            _kill_group(self.challenger_process)
        with contextlib.suppress(Exception):
            deploy.stop()

    def _prune_old_runs(self) -> None:
        """Stop what an earlier run left serving and keep the newest runs' folders only."""
        from reelops import deploy

        if not self.root.is_dir():
            return
        runs = sorted(p for p in self.root.glob("run-*") if p.is_dir())
        previous = os.environ.get("REELOPS_WORKSPACE")
        for index, folder in enumerate(runs):
            os.environ["REELOPS_WORKSPACE"] = str(folder)
            with contextlib.suppress(Exception):
                deploy.stop()
            if index < len(runs) - (KEEP_RUNS - 1):
                shutil.rmtree(folder, ignore_errors=True)
        if previous is None:
            os.environ.pop("REELOPS_WORKSPACE", None)
        else:
            os.environ["REELOPS_WORKSPACE"] = previous

    # ------------------------------------------------------------------ the record

    def _collect(self, partial: bool = False) -> dict:
        """What happened, in plain data: the report's only input (``partial``: what the registry
        still answers, after a failure)."""
        from reelops import registry

        versions = []
        try:
            rows = registry.list_versions()
        except Exception:  # noqa: BLE001 - a partial record is still a report
            if not partial:
                raise
            rows = []
        for row in rows:
            shown = registry.show(row["version"])
            versions.append({key: shown.get(key) for key in (
                "version", "aliases", "algorithm", "blessed", "gate_decision", "gate_compared_with", "dataset_version",
                "dataset_source", "git_commit", "image", "kfp_run_id", "created", "canary_analysis")}
                | {"rmse": shown["metrics"].get("rmse"), "ndcg_at_10": shown["metrics"].get("ndcg_at_10")})
        replays = {mode: replay.stats for mode, replay in self.replays.items()}
        return {
            "facts": {**self.facts, "began": self.began, "site": str(self.site)},
            "events": [{"time": t, "label": label} for t, label in self.events],
            "traffic": _traffic_series(replays, self.revision_versions, self.began),
            "quality": _quality_series(replays.get("ratings"), self.revision_versions),
            "stars": _stars_series(replays.get("recommend"), self.revision_versions, self.began),
            "detector_windows": {v: [w for _, w in sorted(ws.items())] for v, ws in self.detector_windows.items()},
            "retrain": {"decision": getattr(self, "retrain_decision", None), "trigger": getattr(self, "trigger", None)},
            "canary": {"verdicts": [{**v, "time": v["time"] - self.began} for v in self.canary_verdicts],
                       "decision": getattr(self, "canary_decision", None)},
            "shadow": {"version": getattr(self, "challenger", None), "report": getattr(self, "shadow_report", None)},
            "batch": getattr(self, "batch", None),
            "versions": versions,
            "history": registry.history() if rows else [],
            "stages": [],
        }

    def _log_to_mlflow(self) -> str:
        import mlflow

        from reelops import registry

        mlflow.set_tracking_uri(registry.tracking_uri())
        mlflow.set_experiment("reelops-lifecycle")
        with mlflow.start_run(run_name=f"{self.scenario}-seed{self.seed}") as run:
            mlflow.log_params({"scenario": self.scenario, "seed": self.seed, "rate": self.rate,
                               "canary_percent": self.canary_percent})
            mlflow.log_metrics({f"stage_seconds_{r.name}": r.seconds for r in self.results})
            mlflow.set_tags({f"reelops.stage.{r.name}": r.outcome for r in self.results})
            mlflow.log_artifact(str(self.report_path))
            mlflow.log_artifact(str(self.site / "lifecycle.json"))
            return run.info.run_id


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _tree_key(folder: Path) -> str:
    """A folder's content, as a short hash (names and bytes of its files)."""
    digest = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _kill_group(process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _version_of(revision, revision_versions: dict) -> str:
    return revision_versions.get(revision, "?") if revision else "none"


def _traffic_series(replays: dict, revision_versions: dict, began: float, step: float = 5.0) -> list:
    """Requests per version in bins of ``step`` seconds since the run began (both kinds of traffic)."""
    bins: dict = {}
    for stats in replays.values():
        for sent_at, _, code, revision in stats.records:
            entry = bins.setdefault(int((sent_at - began) // step), {"answered": {}, "failed": 0})
            if 200 <= code < 300:
                version = _version_of(revision, revision_versions)
                entry["answered"][version] = entry["answered"].get(version, 0) + 1
            else:
                entry["failed"] += 1
    return [{"t": index * step, **entry} for index, entry in sorted(bins.items())]


def _quality_series(stats, revision_versions: dict, size: int = 250) -> list:
    """Mean absolute error of the predicted ratings, per ``size`` page views in world-time order."""
    if stats is None or not stats.predictions:
        return []
    rows = sorted(stats.predictions, key=lambda p: p[1])
    series = []
    for start in range(0, len(rows) - size + 1, size):
        chunk = rows[start:start + size]
        versions = {_version_of(p[2], revision_versions) for p in chunk}
        series.append({"world_time": chunk[len(chunk) // 2][1], "mae": sum(abs(p[3] - p[4]) for p in chunk) / len(chunk),
                       "n": len(chunk), "version": "/".join(sorted(versions))})
    return series


def _stars_series(stats, revision_versions: dict, began: float, step: float = 10.0) -> list:
    """Mean rating users gave to what each version recommended, in bins of ``step`` seconds."""
    if stats is None:
        return []
    bins: dict = {}
    for sent_at, revision, stars in stats.stars:
        key = (int((sent_at - began) // step), _version_of(revision, revision_versions))
        total, count = bins.get(key, (0.0, 0))
        bins[key] = (total + stars, count + 1)
    return [{"t": index * step, "version": version, "stars": total / count, "n": count}
            for (index, version), (total, count) in sorted(bins.items())]
