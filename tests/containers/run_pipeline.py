"""Run one pipeline with kfp.local's DockerRunner on the built pipeline image (a child of the test).

Every task is its own container (host network: it reaches the MLflow server and the S3
endpoint on 127.0.0.1), with only the environment given in REELOPS_TASK_ENV (JSON): what the
pods get from their secrets.

kfp's DockerRunner starts each container with ``auto_remove=True`` and, when the container
is gone before it asks for the exit code, assumes success. Podman's Docker-compatible API
removes it that early (and answers 500 "no such container"), so a failed task read as a
success here once. The harness therefore runs each task's container itself: the same image,
command, volumes and environment, no auto-removal, the real exit code, then removal.

    python tests/containers/run_pipeline.py NAME PIPELINE_ROOT [key=value ...]
"""

from __future__ import annotations

import json
import os
import sys

from kfp.local import docker_task_handler


def run_container(client, image: str, command: list, volumes: dict, **container_run_args) -> int:
    """kfp's ``run_docker_container`` with the exit code read before the container is removed."""
    image = docker_task_handler.add_latest_tag_if_not_present(image=image)
    print(f"Found image {image!r}\n" if client.images.list(name=image) else f"Missing image {image!r}\n")
    container = client.containers.run(image=image, command=command, detach=True, stdout=True, stderr=True,
                                      volumes=volumes, **container_run_args)
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


docker_task_handler.run_docker_container = run_container


def main() -> None:
    from kfp import local

    from reelops.params import parse_key_values
    from reelops.pipelines import pipeline_function

    name, root, *pairs = sys.argv[1:]
    task_env = json.loads(os.environ["REELOPS_TASK_ENV"])
    local.init(runner=local.DockerRunner(environment=task_env, network_mode="host"), pipeline_root=root,
               raise_on_error=True)
    pipeline_function(name)(**parse_key_values(pairs))


if __name__ == "__main__":
    main()
