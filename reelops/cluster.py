"""What a pipeline step needs from the cluster it runs in: the secrets that configure its services.

On Kubeflow every task is its own pod with an empty disk. A step that needs a service
(the MLflow tracking server, the dataset store) reads it from a Kubernetes secret mounted
as environment variables. The secrets are mounted ``optional=True`` (a required secret
that is missing leaves the pod in ``CreateContainerConfigError`` and the run hangs), so
each step checks, when it runs in a pod, that the variable arrived, and otherwise fails
in one line naming the secret: never a silent fallback to a store that dies with the pod.
"""

from __future__ import annotations

import os

# Secret name -> {secret key: environment variable}; pipelines/definitions.py mounts them.
MLFLOW_SECRET = "reelops-mlflow"
STORAGE_SECRET = "reelops-object-store"
SECRET_ENV = {
    MLFLOW_SECRET: {"tracking_uri": "MLFLOW_TRACKING_URI", "username": "MLFLOW_TRACKING_USERNAME",
                    "password": "MLFLOW_TRACKING_PASSWORD"},
    STORAGE_SECRET: {"store": "REELOPS_STORE", "endpoint": "AWS_ENDPOINT_URL", "access_key": "AWS_ACCESS_KEY_ID",
                     "secret_key": "AWS_SECRET_ACCESS_KEY"},
}

# Set by the KFP launcher in every task pod (and by `reelops pipeline run --isolated`).
POD_VARIABLE = "KFP_POD_NAME"


class NotConfigured(RuntimeError):
    """A step in a cluster pod lacks a service it needs (its secret is missing)."""


def pod_name() -> str | None:
    """The pod this process runs in, when it is a pipeline task; None on a workstation."""
    return os.environ.get(POD_VARIABLE) or None


def missing_in_pod(variable: str, secret: str) -> str:
    """The one-line explanation of a variable a pod did not get from its secret."""
    key = next(key for key, name in SECRET_ENV[secret].items() if name == variable)
    return (f"pod {pod_name()} has no {variable}: create the Kubernetes secret {secret} with key {key} "
            f"(see README, Running on Kubeflow)")
