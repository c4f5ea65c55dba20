"""Deployments: a model version rolled out by a strategy, with the registry aliases kept in step.

The registry says what should serve; a deployment makes serving follow it. Each step of a
strategy is one InferenceService spec (:mod:`reelops.deploy.rollout`) applied to a target;
the target here is the local serving plane (:mod:`reelops.deploy.local`). An alias moves only
after the serving change succeeded:

- first deployment: the version serves all traffic and becomes ``production``;
- ``canary`` (N%): the new version answers N% of requests and holds ``canary``;
  :func:`promote` gives it all traffic and makes it ``production`` (the old one ``previous``);
  :func:`rollback` sends all traffic back and takes ``canary`` away;
- ``blue-green``: the new version runs at 0% with its ``latest`` tag route, is smoke-tested
  there while the stable version keeps all traffic, and holds ``canary``; :func:`promote`
  switches all traffic to it, :func:`rollback` switches back;
- :func:`rollback` after a promotion returns traffic (and ``production``) to the previous version.

Locally each revision gets a drift detector beside it (:mod:`reelops.deploy.detector`, as the
sidecar of a KServe predictor): the router logs the revision's answers and the feedback on them
to it; ``deploy(detector=...)`` sets it up or turns it off for the plane.

``shadow``: the new version answers a copy of every request beside the one that serves; its
answers reach nobody and are compared with the primary's (:mod:`reelops.deploy.shadow`);
:func:`stop_shadow` ends it. No alias moves: a shadow is an observation, not a rollout.

A canary deployed with ``analysis="auto"`` (the default) is then watched by
:mod:`reelops.deploy.analysis` until it decides: the canary is promoted, or rolled back
(worse, or inconclusive), and the decision with its evidence is kept on the version (tag
``reelops.canary_analysis``) and in the alias history; :func:`status` shows the analysis.
"""

from __future__ import annotations

import json
import os
import time

from reelops.deploy.local import LocalPlane, PlaneError, alive, stop_revision, terminate
from reelops.deploy.rollout import (BLUE_GREEN, CANARY, STRATEGIES, DeployError, RolloutError, ServiceState,
                                    template_of, with_canary)

__all__ = ["BLUE_GREEN", "CANARY", "SHADOW", "STRATEGIES", "DeployError", "RolloutError", "deploy", "promote", "rollback",
           "status", "stop", "stop_shadow"]

TARGETS = ("local", "kserve")
SHADOW = "shadow"
AUTO, MANUAL = "auto", "manual"
ANALYSES = (AUTO, MANUAL)
STABLE, ROLLED_BACK = "stable", "rolled-back"
SMOKE_USER = 1
# The drift detector beside each revision of the local plane (``deploy(detector=...)``).
DETECTOR_DEFAULTS = {"enabled": True, "label_wait": 30.0, "retrain_command": None, "cooldown_days": 7.0,
                     "max_retrains": None}


def _settings(storage_uri: str):
    from reelops.manifests import RenderSettings

    return RenderSettings(storage_uri=storage_uri)


def _may_serve(version: str, force: bool, reason: str | None) -> bool:
    """Whether the version needs an override to serve; raises when it needs one that is not given."""
    from reelops.gate import UnblessedModelError, check_servable

    try:
        check_servable(version=version)
        return False
    except UnblessedModelError as error:
        if not force:
            raise DeployError(f"{error}".replace("pass --allow-unblessed to serve it anyway",
                                                 "deploy it anyway with --force --reason TEXT")) from None
        if not (reason or "").strip():
            raise DeployError("--force needs --reason TEXT: an override is recorded in the alias history") from None
        return True


def _spec(version: str, strategy: str | None, percent: int, override: bool) -> dict:
    """The InferenceService of one version for a strategy's first step (None: the first deployment)."""
    from reelops import registry
    from reelops.manifests.objects import inference_service

    # The plane's predictors read the version from the local cache; it is the version's storage
    # URI on this machine (file://), pinned in the revision like any KServe storage URI.
    storage_uri = f"file://{registry.download_model(version)}"
    spec = inference_service(_settings(storage_uri), storage_uri=storage_uri, allow_unblessed=override)
    if strategy == CANARY:
        return with_canary(spec, percent)
    if strategy == BLUE_GREEN:
        return with_canary(spec, 0, tag_routing=True)
    return spec


def _container_args(spec: dict) -> list:
    return spec["spec"]["predictor"]["containers"][0]["args"]


def _record(state: dict, action: str, **detail) -> None:
    state.setdefault("history", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                            "action": action, **detail})


def _cluster(cluster: dict | None):
    from reelops.deploy.kserve_target import KServeTarget

    return KServeTarget(**(cluster or {}))


def deploy(version, strategy: str = CANARY, percent: int = 10, force: bool = False, reason: str | None = None,
           port: int | None = None, target: str = "local", cluster: dict | None = None,
           storage_uri: str | None = None, analysis: str = AUTO, policy=None, prometheus_url: str | None = None,
           progress=None, detector: dict | None = None) -> dict:
    """Roll out ``version`` with ``strategy`` on the target; returns :func:`status`.

    Args:
        version: a registered model version, or an alias naming one (``canary``).
        strategy: ``canary`` or ``blue-green`` (the first deployment serves all traffic either way).
        percent: the canary's share of traffic (1-99).
        force: deploy a version the gate did not bless; needs ``reason`` (both recorded).
        reason: why (in the alias history).
        port: the router's port for a plane that is not running yet (a free one by default).
        target: ``local`` (the local serving plane) or ``kserve`` (a cluster, through KServeClient).
        cluster: for ``kserve``: ``namespace``, ``kubeconfig``, ``timeout`` (see KServeTarget).
        storage_uri: for ``kserve``: where the cluster reads the version's model folder (by
            default its artifact location in the tracking store, which must be s3://, gs://, ...).
        analysis: for a canary: ``auto`` watches it and promotes or rolls back on its own
            (:mod:`reelops.deploy.analysis`; this call returns after the decision), ``manual``
            leaves it to :func:`promote` / :func:`rollback`.
        policy: the analysis' rules (:class:`reelops.deploy.analysis.CanaryPolicy`; defaults when None).
        prometheus_url: for ``kserve`` with ``auto``: the Prometheus whose PromQL the analysis reads.
        progress: called with each interim verdict of the analysis.
        detector: on the local plane, the drift detector started beside each revision from
            now on: ``enabled`` (default True), ``label_wait`` (seconds, default 30),
            ``retrain_command`` (default None: decide and report only), ``cooldown_days`` (data
            time between two retrain triggers, default 7), ``max_retrains`` (runs a detector
            starts at most, default None: no limit); None keeps the plane's.

    Raises:
        DeployError: the version may not serve, a rollout is in progress, or a revision
            failed to start (nothing changed then).
    """
    from reelops import registry

    version = str(version)
    if version in registry.ALIASES:  # e.g. the blessed candidate: reelops deploy canary
        version = registry.resolve_alias(version)
    if target not in TARGETS:
        raise DeployError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if strategy not in (*STRATEGIES, SHADOW):
        raise DeployError(f"unknown strategy {strategy!r}; choose from {', '.join((*STRATEGIES, SHADOW))}")
    if strategy == SHADOW:
        if target != "local":
            raise DeployError("a shadow on kserve is rendered, not applied: reelops manifests render --shadow-storage-uri URI "
                              "(the primary's logger feeds the comparator)")
        return _start_shadow(version, reason or "shadow")
    if strategy == CANARY and not 1 <= int(percent) <= 99:
        raise DeployError(f"--percent must be within 1-99 for a canary, got {percent}")
    if analysis not in ANALYSES:
        raise DeployError(f"unknown analysis {analysis!r}; choose from {', '.join(ANALYSES)}")
    watch = strategy == CANARY and analysis == AUTO
    if watch and target == "kserve" and not prometheus_url:
        raise DeployError("automatic canary analysis on kserve reads Prometheus: pass --prometheus-url URL "
                          "(or --analysis manual)")
    override = _may_serve(version, force, reason)
    reason = reason or f"deployed ({strategy})"
    if target == "kserve":
        from reelops.deploy.kserve_target import cluster_storage_uri

        kube = _cluster(cluster)
        step = kube.deploy(version, strategy, percent, storage_uri or cluster_storage_uri(version), override)
        _aliases_after_deploy(version, step == "first", reason, override)  # the cluster took the change
        if watch and step != "first":
            return _analyse_and_decide(version, target, cluster, policy, prometheus_url, progress)
        return kube.status()
    plane = LocalPlane()
    with plane.lock():
        state = plane.read()
        if state is not None and not plane.router_running(state):
            plane.stop_all(state)  # a plane whose router died (a reboot): start again from nothing
            plane.state_path.unlink()
            state = None
        first = state is None
        spec = _spec(version, None if first else strategy, percent, override)
        if first:
            service = ServiceState(spec["metadata"]["name"])
        else:
            service = ServiceState.from_dict(state["service"])
            if state["phase"] in STRATEGIES:
                latest = service.revision(service.latest_ready)
                raise DeployError(f"a {state['phase']} of version {latest.version} is in progress: "
                                  "reelops deploy promote or reelops deploy rollback first")
            if service.revision(service.latest_rolled_out).version == version:
                raise DeployError(f"version {version} already serves all traffic")
        # The same template as the latest revision (a version rolled back, then deployed again)
        # makes no new revision in Knative: that revision is routed again.
        reused = bool(service.revisions) and template_of(spec) == service.revisions[-1].template
        revision = service.revisions[-1].name if reused else f"{service.name}-predictor-{len(service.revisions) + 1:05d}"
        router = plane.start_router(port) if first else state["router"]
        running = not first and revision in state["processes"] and alive(state["processes"][revision]["pid"])
        settings = {**DETECTOR_DEFAULTS, **((state or {}).get("detector") or {}), **(detector or {})}
        try:
            process = state["processes"][revision] if running else _start_revision(plane, settings, revision, version,
                                                                                    _container_args(spec))
        except PlaneError as error:
            if first:
                terminate(router["pid"])
            raise DeployError(str(error)) from error
        service.apply(spec, version)
        if first:
            state = {"router": router, "processes": {}, "phase": STABLE, "strategy": strategy, "history": []}
        previous_state = json.loads(json.dumps(state))
        state["detector"] = settings
        state["processes"][revision] = process
        state.setdefault("revision_args", {})[revision] = _container_args(spec)
        state["service"] = service.to_dict()
        state["phase"] = STABLE if first else strategy
        state["override"] = override
        _record(state, "deploy", version=version, revision=revision, strategy=strategy,
                percent=percent if strategy == CANARY and not first else None, reason=reason)
        plane.write(state)
        try:
            plane.wait_router_sees(state)
            if strategy == BLUE_GREEN and not first:
                _smoke_test(state)
        except (PlaneError, RuntimeError) as error:
            # Back to what served before; the new revision goes away.
            if first:
                plane.stop_all(state)
                plane.state_path.unlink()
            else:
                plane.write(previous_state)
                if not running:
                    stop_revision(process)
            raise DeployError(f"{revision} (version {version}) was not taken into service: {error}") from error
        _aliases_after_deploy(version, first, reason, override)
        if not first:
            plane.retire(state, keep=service.serving())
            plane.write(state)
    if watch and not first:
        return _analyse_and_decide(version, target, cluster, policy, prometheus_url, progress)
    return status()


def _start_revision(plane: LocalPlane, settings: dict, revision: str, version: str, args: list) -> dict:
    """A revision's predictor and, when the plane's settings ask for one, its drift detector."""
    detector = plane.spawn_detector(revision, version, settings) if settings.get("enabled") else None
    try:
        process = plane.start_revision(revision, args)
    except PlaneError:
        if detector:
            terminate(detector["process"].pid)
        raise
    if detector:
        try:
            # Loaded beside the predictor in the background class: on a busy machine it may
            # need longer than a helper's minute.
            process["detector"] = plane.wait_helper(detector, timeout=180.0)
        except PlaneError:
            terminate(process["pid"])
            raise
    return process


def _start_shadow(version: str, reason: str) -> dict:
    """Start ``version`` as the shadow of the serving plane, with its comparator."""
    plane = LocalPlane()
    with plane.lock():
        state = _require_plane(plane)
        if state.get("shadow"):
            raise DeployError(f"version {state['shadow']['version']} already runs as the shadow: "
                              "reelops deploy stop-shadow first")
        service = ServiceState.from_dict(state["service"])
        # The serving version itself may be its own shadow: the comparator's check of itself
        # (agreement 1.0). A shadow's answers reach nobody, so the gate does not hold it back (it is how a
        # candidate the gate doubts is watched on real traffic).
        spec = _spec(version, None, 0, override=True)
        revision = f"{service.name}-shadow-v{version}"
        try:
            process = plane.start_revision(revision, _container_args(spec), background=True)
        except PlaneError as error:
            raise DeployError(str(error)) from error
        try:
            comparator = plane.start_comparator(process["port"], spec["metadata"]["name"])
        except PlaneError as error:
            terminate(process["pid"])
            raise DeployError(str(error)) from error
        state["shadow"] = {"version": version, "revision": revision, "process": process, "comparator": comparator}
        _record(state, "shadow", version=version, revision=revision, reason=reason)
        plane.write(state)
    return status()


def stop_shadow(reason: str | None = None) -> dict:
    """Stop the shadow and its comparator; the last report stays in the plane's history."""
    plane = LocalPlane()
    with plane.lock():
        state = _require_plane(plane)
        shadow = state.get("shadow")
        if not shadow:
            raise DeployError("no shadow runs on the local plane")
        report = _shadow_report(shadow)
        del state["shadow"]
        plane.write(state)  # the router stops logging within 0.2 s
        time.sleep(0.3)
        plane.stop_shadow({"shadow": shadow})
        last = (report or {}).get("windows", [])[-1:] or [(report or {}).get("current")]
        _record(state, "stop-shadow", version=shadow["version"], reason=reason or "shadow stopped",
                compared=(report or {}).get("compared"), last_window=last[0])
        plane.write(state)
    return status()


def _detector_report(detector: dict | None) -> dict | None:
    """A revision's drift detector as ``deploy status`` shows it: where, and what it judged so far."""
    import httpx

    if not detector:
        return None
    report = {"url": detector["url"], "running": alive(detector["pid"])}
    if report["running"]:
        try:
            full = httpx.get(f"{detector['url']}/detector/status", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return report
        latest = full.get("latest") or {}
        report.update({key: full[key] for key in ("windows_judged", "verdicts", "interactions", "backlog_rows",
                                                  "dropped", "decision", "retrain")})
        report["latest_verdict"] = latest.get("verdict")
    return report


def _shadow_report(shadow: dict) -> dict | None:
    import httpx

    try:
        return httpx.get(f"{shadow['comparator']['url']}/shadow/status", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None


def _analysis_path():
    from reelops.workspace import workspace_dir

    return workspace_dir() / "serving" / "canary-analysis.json"


def _write_analysis(verdict: dict) -> None:
    """The analysis as it stands, for ``reelops deploy status`` in another process (replaced whole)."""
    path = _analysis_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(verdict, indent=2, sort_keys=True))
    os.replace(partial, path)


def _read_analysis() -> dict | None:
    path = _analysis_path()
    return json.loads(path.read_text()) if path.is_file() else None


def _evidence(verdict: dict) -> dict:
    """What is kept of a verdict on the version and in the history: decision, reason, counts, intervals."""
    keep = ("decision", "reason", "version", "canary", "stable", "canary_requests", "seconds", "polls", "comparisons",
            "policy")
    return {key: verdict[key] for key in keep if key in verdict}


def _analyse_and_decide(version: str, target: str, cluster: dict | None, policy, prometheus_url: str | None,
                        progress) -> dict:
    """Watch the canary just deployed until the analysis decides, then promote or roll back."""
    from reelops import registry
    from reelops.deploy.analysis import (PROMOTE, ROLLBACK, CanaryPolicy, MetricsError, PlaneMetrics,
                                         PrometheusMetrics, analyse)

    if target == "kserve":
        kube = _cluster(cluster)
        service = kube.status()["services"][registry.MODEL_NAME]
        source = PrometheusMetrics(prometheus_url, selector=f'namespace="{kube.namespace}"')
    else:
        # The revisions from the plane's state (status() would probe every predictor's readiness too).
        plane = LocalPlane()
        service = ServiceState.from_dict(plane.read()["service"]).status()
        source = PlaneMetrics(plane)
    canary, stable = service["latestReadyRevision"], service["latestRolledoutRevision"]

    def report(verdict: dict) -> None:
        _write_analysis({**verdict, "version": version, "target": target,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        if progress is not None:
            progress(verdict)

    try:
        verdict = analyse(source, canary, stable, policy or CanaryPolicy(), progress=report)
    except MetricsError as error:
        verdict = {"decision": ROLLBACK, "reason": f"the metrics could not be read: {error}", "canary": canary,
                   "stable": stable, "comparisons": [], "canary_requests": 0}
        report(verdict)
    evidence = {**_evidence(verdict), "version": version}
    registry.record_canary_analysis(version, evidence)
    if verdict["decision"] == PROMOTE:
        result = promote(reason=f"canary analysis: {verdict['reason']}", target=target, cluster=cluster,
                         analysis=evidence)
    else:
        result = rollback(reason=f"canary analysis, {verdict['decision']}: {verdict['reason']}", target=target,
                          cluster=cluster, analysis=evidence)
    result["analysis"] = evidence
    return result


def _aliases_after_deploy(version: str, first: bool, reason: str, override: bool) -> None:
    """The registry follows a deployment that succeeded: the first one is production, a rollout canary."""
    from reelops import registry

    if not first:
        registry.set_canary(version, reason, override=override)
    elif registry.aliases().get(registry.PRODUCTION) != version:
        registry.promote(version, reason=reason, force=override)


def _aliases_after_rollback(in_progress: bool, reason: str, analysis: dict | None = None) -> None:
    """The registry follows a rollback: a rollout's canary is withdrawn, or production goes back."""
    from reelops import registry

    if in_progress:
        registry.clear_canary(reason, analysis=analysis)
    else:
        registry.rollback(reason)


def _smoke_test(state: dict) -> None:
    """Ask the new revision for a recommendation on its ``latest`` tag route (blue-green)."""
    import httpx

    name = state["service"]["name"]
    answer = httpx.post(f"{state['router']['url']}/v1/models/{name}:predict",
                        json={"instances": [{"user_id": SMOKE_USER, "k": 5}]},
                        headers={"Host": f"latest-{name}-predictor.local"}, timeout=30)
    if answer.status_code != 200 or len(answer.json()["predictions"][0]["movie_ids"]) != 5:
        raise RuntimeError(f"smoke test on the latest tag route answered HTTP {answer.status_code}: {answer.text[:200]}")


def _require_plane(plane: LocalPlane) -> dict:
    state = plane.read()
    if state is None:
        raise DeployError("no deployment on this workspace's local plane: reelops deploy VERSION first")
    if not plane.router_running(state):
        raise DeployError(f"the local plane's router (pid {state['router']['pid']}) is not running: "
                          "reelops deploy stop, then deploy again")
    return state


def promote(reason: str | None = None, target: str = "local", cluster: dict | None = None,
            analysis: dict | None = None) -> dict:
    """Give the canary (or the blue-green candidate) all traffic and make it ``production``
    (``analysis``: the canary analysis that decided it, for the history)."""
    from reelops import registry

    if target == "kserve":
        kube = _cluster(cluster)
        version, override = kube.promote()
        registry.promote(version, reason=reason or "promoted", force=override, analysis=analysis)
        return kube.status()

    plane = LocalPlane()
    with plane.lock():
        state = _require_plane(plane)
        if state["phase"] not in STRATEGIES:
            raise DeployError("nothing to promote: no canary or blue-green rollout is in progress")
        service = ServiceState.from_dict(state["service"])
        version = service.revision(service.latest_ready).version
        service.apply(with_canary(service.spec, None), version)
        state["service"], state["phase"] = service.to_dict(), STABLE
        reason = reason or f"promoted after {state['strategy']}"
        _record(state, "promote", version=version, reason=reason,
                **({"analysis": analysis["decision"]} if analysis else {}))
        plane.write(state)
        plane.wait_router_sees(state)
        registry.promote(version, reason=reason, force=state.get("override", False), analysis=analysis)
        plane.retire(state, keep=service.serving())
        plane.write(state)
    return status()


def rollback(reason: str | None = None, target: str = "local", cluster: dict | None = None,
             analysis: dict | None = None) -> dict:
    """All traffic back to the version that served before (a rollout in progress, or the last
    promotion; ``analysis``: the canary analysis that decided it, for the history)."""
    if target == "kserve":
        kube = _cluster(cluster)
        _, in_progress = kube.rollback()
        _aliases_after_rollback(in_progress, reason or "rolled back", analysis)
        return kube.status()

    plane = LocalPlane()
    with plane.lock():
        state = _require_plane(plane)
        service = ServiceState.from_dict(state["service"])
        in_progress = state["phase"] in STRATEGIES
        back_to = service.latest_rolled_out if in_progress else service.previous_rolled_out
        if not back_to or (not in_progress and (state["phase"] == ROLLED_BACK
                                                or back_to == service.latest_rolled_out)):
            raise DeployError("nothing to roll back: no rollout in progress and no earlier version rolled out")
        if back_to not in state["processes"] or not alive(state["processes"][back_to]["pid"]):
            # KServe keeps old revisions (scaled to zero); here a retired one starts again from its
            # own command line before any traffic goes back to it.
            try:
                state["processes"][back_to] = _start_revision(plane, state.get("detector") or {}, back_to,
                                                              service.revision(back_to).version,
                                                              state["revision_args"][back_to])
            except PlaneError as error:
                raise DeployError(f"cannot roll back: {error}") from error
        version = service.revision(service.latest_ready).version
        service.apply(with_canary(service.spec, 0), version)
        state["service"], state["phase"] = service.to_dict(), ROLLED_BACK
        reason = reason or ("rolled back during " + state["strategy"] if in_progress else "rolled back")
        _record(state, "rollback", version=version, to=service.revision(back_to).version, reason=reason,
                **({"analysis": analysis["decision"]} if analysis else {}))
        plane.write(state)
        plane.wait_router_sees(state)
        _aliases_after_rollback(in_progress, reason, analysis)
        plane.retire(state, keep=service.serving())
        plane.write(state)
    return status()


def stop() -> dict:
    """Stop the router and every predictor of the local plane; the registry is left as it is."""
    plane = LocalPlane()
    with plane.lock():
        state = plane.read()
        if state is None:
            return {"stopped": []}
        stopped = plane.stop_all(state)
        plane.state_path.unlink()
    return {"stopped": stopped}


def status(target: str = "local", cluster: dict | None = None) -> dict:
    """What serves: the router's URL, each revision's version, process, readiness and traffic
    (on ``kserve``: both InferenceServices' revisions, traffic, readiness and URL as KServe reports them)."""
    import httpx

    if target == "kserve":
        return {**_cluster(cluster).status(), "analysis": _read_analysis()}

    plane = LocalPlane()
    state = plane.read()
    if state is None:
        return {"running": False, "revisions": [], "analysis": _read_analysis()}
    service = ServiceState.from_dict(state["service"])
    traffic = {}
    for route in service.routes():
        entry = traffic.setdefault(route["revision"], {"percent": 0, "tags": []})
        entry["percent"] += route["percent"]
        if route["tag"]:
            entry["tags"].append(route["tag"])
    revisions = []
    for revision in service.revisions:
        process = state["processes"].get(revision.name)
        running = bool(process) and alive(process["pid"])
        ready = False
        if running:
            try:
                ready = httpx.get(f"http://127.0.0.1:{process['port']}/v2/health/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
        revisions.append({"revision": revision.name, "version": revision.version, "running": running, "ready": ready,
                          "port": process["port"] if process else None,
                          "traffic": traffic.get(revision.name, {}).get("percent", 0),
                          "tags": traffic.get(revision.name, {}).get("tags", []),
                          "detector": _detector_report(process.get("detector")) if process else None})
    shadow = state.get("shadow")
    if shadow:
        shadow = {"version": shadow["version"], "revision": shadow["revision"],
                  "running": alive(shadow["process"]["pid"]) and alive(shadow["comparator"]["pid"]),
                  "comparator": shadow["comparator"]["url"], "report": _shadow_report(shadow)}
    return {"running": plane.router_running(state), "url": state["router"]["url"], "phase": state["phase"],
            "strategy": state["strategy"], "revisions": revisions, "status": service.status(),
            "history": state.get("history", [])[-10:], "plane": str(plane.root), "analysis": _read_analysis(),
            "shadow": shadow}
