"""The local serving plane: InferenceService objects applied on one machine.

Each revision is one predictor process (``reelops serve``, the real ``kserve.ModelServer``)
started from the revision's own container command line, with the address and port
replaced; a router process (:mod:`reelops.deploy.router`) on one port splits traffic as
KServe would. The plane's state (the InferenceService, its revisions and status, the
processes) is one JSON file in the workspace, replaced whole under a file lock, so a later
``reelops deploy status|promote|rollback|stop`` in another process finds the plane.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from reelops.deploy.rollout import ServiceState
from reelops.workspace import workspace_dir

READY_TIMEOUT = 180.0
# How long a revision that just lost its traffic keeps running: the router re-reads the state
# within 0.2 s, and requests it sent before that finish.
DRAIN_SECONDS = 1.0


class PlaneError(RuntimeError):
    """Something the local plane cannot do (says what, and where its logs are)."""


def plane_dir() -> Path:
    """Where the plane keeps its state, logs and feedback."""
    return workspace_dir() / "serving" / "plane"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def background_priority() -> None:
    """Run the calling process only on CPU time nothing else wants (Linux ``SCHED_IDLE``; the
    lowest nice value elsewhere): for a shadow, whose work must never delay a caller."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def alive(pid: int | None) -> bool:
    """Whether a process runs (a zombie does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def terminate(pid: int | None, timeout: float = 20.0) -> None:
    """SIGTERM (the server finishes what it is answering), then SIGKILL after ``timeout``."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def local_args(container_args: list, port: int) -> list:
    """A revision's container command line, made to serve REST on 127.0.0.1:``port`` only."""
    args, skip = [], False
    for index, arg in enumerate(container_args):
        if skip:
            skip = False
            continue
        if arg in ("--host", "--port", "--grpc-port"):
            skip = True
            continue
        if arg == "--no-grpc":
            continue
        args.append(arg)
    return [*args, "--host", "127.0.0.1", "--port", str(port), "--no-grpc"]


def stop_revision(process: dict) -> None:
    """Stop a revision's predictor and, when it has one, its drift detector."""
    terminate(process["pid"])
    if process.get("detector"):
        terminate(process["detector"]["pid"])


class LocalPlane:
    """The plane in one workspace: its state file, its router and its predictor processes."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else plane_dir()
        self.state_path = self.root / "state.json"
        self.logs = self.root / "logs"

    # ------------------------------------------------------------------ state

    def lock(self):
        """The lock every change of the plane holds (one per workspace, never taken twice by one process)."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / "state.lock"), timeout=600)

    def read(self) -> dict | None:
        if not self.state_path.is_file():
            return None
        return json.loads(self.state_path.read_text())

    def write(self, state: dict) -> None:
        """Replace the state whole (the router never reads half a file)."""
        service = ServiceState.from_dict(state["service"])
        state["routes"] = service.routes()
        partial = self.state_path.with_name(".state.json.partial")
        partial.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(partial, self.state_path)

    # ------------------------------------------------------------------ processes

    def router_running(self, state: dict | None) -> bool:
        return bool(state) and alive(state["router"]["pid"])

    def start_router(self, port: int | None) -> dict:
        """Start the router (detached: it outlives this command) and wait until it answers."""
        return self._start_helper("the router", "router.log", ["reelops.deploy.router", "--state", str(self.state_path)],
                                  port or free_port(), "/plane/health")

    def _start_helper(self, what: str, log_name: str, module_args: list, port: int, health: str,
                      background: bool = False) -> dict:
        """Start a detached helper process (``python -m MODULE ... --port P``) and wait until ``health`` answers."""
        return self.wait_helper(self.spawn_helper(what, log_name, module_args, port, health, background))

    def spawn_helper(self, what: str, log_name: str, module_args: list, port: int, health: str,
                     background: bool = False) -> dict:
        """Start a detached helper process without waiting (:meth:`wait_helper` waits)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / log_name
        with open(log, "ab") as output:
            process = subprocess.Popen([sys.executable, "-m", *module_args, "--port", str(port)], stdout=output,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=background_priority if background else None)
        return {"what": what, "process": process, "port": port, "health": health, "log": log,
                "started": time.monotonic()}

    def wait_helper(self, pending: dict, timeout: float = 60.0) -> dict:
        """Wait until a spawned helper answers its health check; stop it and raise when it does not."""
        process, log, port = pending["process"], pending["log"], pending["port"]
        url = f"http://127.0.0.1:{port}"
        deadline = pending["started"] + timeout
        while True:  # asked at least once: the wait may begin after the deadline (spawned long before)
            if process.poll() is not None:
                raise PlaneError(f"{pending['what']} exited with code {process.returncode} (log: {log})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{pending['health']}", timeout=1).status_code == 200:
                    return {"pid": process.pid, "port": port, "url": url, "log": str(log)}
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        terminate(process.pid)
        raise PlaneError(f"{pending['what']} did not answer on port {port} within {timeout:.0f} s (log: {log})")

    def start_revision(self, revision: str, container_args: list, background: bool = False) -> dict:
        """Start one revision's predictor and wait until it is ready (its model loaded).

        ``background``: it gets only CPU time the other processes leave idle (a shadow's
        predictor must not slow the primary's callers on a shared machine).
        """
        from reelops.serving.client import wait_until_ready

        self.logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = local_args(container_args, port)
        log = self.logs / f"{revision}.log"
        env = None
        if background:
            # One math thread: a batch of replayed requests would otherwise wake a thread per core
            # (OpenBLAS, OpenMP), and spinning pool threads contend with the callers' work.
            env = {**os.environ, **{key: "1" for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
        with open(log, "ab") as output:
            process = subprocess.Popen([sys.executable, "-m", "reelops.cli", *args], stdout=output,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=background_priority if background else None, env=env)
        name = args[args.index("--name") + 1] if "--name" in args else "movie-recommender"
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", name, timeout=READY_TIMEOUT, process=process)
        except (TimeoutError, RuntimeError) as error:
            terminate(process.pid)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
            raise PlaneError(f"revision {revision} did not become ready: {error}"
                             f"{': ' + tail[0] if tail else ''} (log: {log})") from error
        return {"pid": process.pid, "port": port, "args": container_args, "log": str(log)}

    def spawn_detector(self, revision: str, version: str, settings: dict) -> dict:
        """Start the drift detector beside one revision (``reelops detector serve``, in the
        background: a sidecar must never slow its predictor's callers); :meth:`wait_helper`
        waits for it (it loads while the predictor loads).

        ``settings``: ``label_wait`` (seconds), ``retrain_command`` (or None), ``cooldown_days``,
        ``max_retrains`` (or None).
        """
        args = ["reelops.cli", "detector", "serve", "--model-version", str(version),
                "--label-wait", str(settings.get("label_wait", 30.0)),
                "--cooldown-days", str(settings.get("cooldown_days", 7.0))]
        if settings.get("retrain_command"):
            args += ["--retrain-command", settings["retrain_command"]]
            if settings.get("max_retrains") is not None:
                args += ["--max-retrains", str(settings["max_retrains"])]
        return self.spawn_helper(f"the drift detector of {revision}", f"{revision}-detector.log", args, free_port(),
                                 "/health", background=True)

    def start_comparator(self, shadow_port: int, name: str) -> dict:
        """Start the shadow comparator (``reelops shadow``) against a shadow predictor, in the background."""
        return self._start_helper("the shadow comparator", "shadow-comparator.log",
                                  ["reelops.cli", "shadow", "--shadow-url", f"http://127.0.0.1:{shadow_port}", "--name",
                                   name], free_port(), "/health", background=True)

    def wait_router_sees(self, state: dict, timeout: float = 10.0) -> None:
        """Wait until the router routes by ``state`` (it re-reads the file every 0.2 s)."""
        url = state["router"]["url"]
        wanted = ServiceState.from_dict(state["service"]).routes()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                seen = httpx.get(f"{url}/plane/health", timeout=2).json()
                if seen["routes"] == wanted and all(seen["ready"].get(r["revision"]) for r in wanted
                                                   if r["percent"] > 0 or r.get("tag")):
                    return
            time.sleep(0.05)
        raise PlaneError(f"the router at {url} did not take the new routes within {timeout:.0f} s "
                         f"(log: {state['router']['log']})")

    def retire(self, state: dict, keep: set) -> list:
        """Stop the predictors of revisions no route reaches any more (after the router drained them)."""
        stopped = [revision for revision in state["processes"] if revision not in keep]
        if stopped:
            time.sleep(DRAIN_SECONDS)
        for revision in stopped:
            stop_revision(state["processes"].pop(revision))
        return stopped

    def stop_all(self, state: dict) -> list:
        stopped = []
        terminate(state["router"]["pid"])
        for revision, process in state["processes"].items():
            stop_revision(process)
            stopped.append(revision)
        return stopped + self.stop_shadow(state)

    def stop_shadow(self, state: dict) -> list:
        """Stop the shadow's predictor and comparator, if one runs; returns the shadow revision."""
        shadow = state.get("shadow")
        if not shadow:
            return []
        terminate(shadow["comparator"]["pid"])
        terminate(shadow["process"]["pid"])
        return [shadow["revision"]]
