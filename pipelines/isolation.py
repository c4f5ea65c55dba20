"""Task isolation for local pipeline runs: every task as if it ran in its own pod.

On Kubeflow each task is a pod with an empty disk that gets the environment of the secrets
it mounts, and nothing else. ``kfp.local`` runs every task as a subprocess of one machine
sharing one disk and one environment, which hides a step that leans on a file another step
left behind. In isolation mode the harness, not the step code, gives each task:

- a fresh working directory, ``HOME``, ``TMPDIR`` and ``REELOPS_WORKSPACE`` of its own;
- ``KFP_POD_NAME``, as the KFP launcher sets it in a pod (so the steps' own "is my service
  configured?" checks apply);
- only the service variables of the secrets the compiled pipeline mounts on that task
  (``reelops.cluster.SECRET_ENV``): a step that reaches MLflow or the dataset store without
  its secret fails here as it would on a cluster.

Tasks then exchange data only through KFP artifacts (the pipeline root) and the configured
services. ``kfp.local`` has no per-task environment hook, so this wraps its subprocess task
handler for the duration of a run (``kfp.local.subprocess_task_handler`` looks the class up
at each task; pinned kfp 2.17.3, checked by ``tests/test_isolated_pipelines.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

from reelops.cluster import POD_VARIABLE, SECRET_ENV

# Variables a task gets from the harness, never from the parent process.
_PER_TASK = ("HOME", "TMPDIR", "REELOPS_WORKSPACE", POD_VARIABLE, "REELOPS_LOCAL_MLFLOW_URI", "PWD")


class IsolationError(RuntimeError):
    """An isolated run lacks the services its tasks need; the message says which."""


def check_services(environ=None) -> dict:
    """The services an isolated run reaches: ``{"tracking_uri", "store"}``.

    Raises:
        IsolationError: no tracking server, or no dataset store every task can reach.
    """
    environ = os.environ if environ is None else environ
    tracking = environ.get("MLFLOW_TRACKING_URI", "")
    store = environ.get("REELOPS_STORE", "")
    if not tracking.startswith(("http://", "https://")):
        raise IsolationError("an isolated run reaches MLflow as a pod does, over the network: set "
                             f"MLFLOW_TRACKING_URI to a tracking server (http://...), not {tracking or 'nothing'!r}")
    if not store:
        raise IsolationError("an isolated run keeps dataset versions where every task reaches them: set REELOPS_STORE "
                             "(s3://bucket/prefix, gs://..., or a shared file:// folder)")
    return {"tracking_uri": tracking, "store": store}


def task_environment(parent: dict, secrets: set, task_dir: Path, pod: str) -> dict:
    """The environment of one task: the parent's, minus service variables of unmounted secrets.

    Args:
        parent: the parent process's environment.
        secrets: the secret names the compiled pipeline mounts on this task.
        task_dir: the task's own folder (home, tmp, workspace and work are made in it).
        pod: the pod name the task sees.
    """
    withheld = {variable for secret, mapping in SECRET_ENV.items() if secret not in secrets
                for variable in mapping.values()}
    env = {key: value for key, value in parent.items() if key not in withheld and key not in _PER_TASK}
    for name in ("home", "tmp", "workspace", "work"):
        (task_dir / name).mkdir(parents=True, exist_ok=True)
    env.update({"HOME": str(task_dir / "home"), "TMPDIR": str(task_dir / "tmp"),
                "REELOPS_WORKSPACE": str(task_dir / "workspace"), "PWD": str(task_dir / "work"), POD_VARIABLE: pod})
    return env


def _function_name(full_command: list) -> str:
    if "--function_to_execute" in full_command:
        return full_command[full_command.index("--function_to_execute") + 1]
    return "task"


@contextlib.contextmanager
def isolated_tasks(tasks_root: Path, secrets_by_function: dict, pipeline: str):
    """Within this context, kfp.local runs each task isolated under ``tasks_root/<n>-<function>/``.

    Args:
        tasks_root: where each task's own folders are made.
        secrets_by_function: component function name -> secrets it mounts
            (:func:`reelops.pipelines.structure.function_secrets` of the compiled pipeline).
        pipeline: the pipeline name, part of each task's pod name.
    """
    from kfp.local import status, subprocess_task_handler as handlers

    original = handlers.SubprocessTaskHandler
    counter = itertools.count(1)

    class IsolatedTaskHandler(original):
        """kfp.local's subprocess handler, with the task's own folders and environment."""

        def run(self) -> status.Status:
            function = _function_name(self.full_command)
            number = next(counter)
            task_dir = Path(tasks_root) / f"{number:02d}-{function}"
            pod = f"{pipeline}-{number:02d}-{function.replace('_', '-')}"
            env = task_environment({**os.environ, **self.env_vars}, secrets_by_function.get(function, set()),
                                   task_dir, pod)
            # As kfp.local does: the component's "python3" is this environment's interpreter.
            command = handlers.replace_python_executable(self.full_command, sys.executable)
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  bufsize=1, env=env, cwd=task_dir / "work") as process:
                for line in iter(process.stdout.readline, ""):
                    print(line, end="")
                code = process.wait()
            return status.Status.SUCCESS if code == 0 else status.Status.FAILURE

    handlers.SubprocessTaskHandler = IsolatedTaskHandler
    try:
        yield
    finally:
        handlers.SubprocessTaskHandler = original
