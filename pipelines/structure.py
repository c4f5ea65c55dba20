"""The structure of a compiled pipeline, for golden-file comparisons.

A compiled IR YAML embeds each component's source code, which changes with every edit of
the library; what reviewers care about is the graph: tasks, their inputs and outputs,
dependencies and conditions, images, caching, retries, resources and secrets.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def pipeline_structure(path: str | Path) -> dict:
    """The graph-level structure of a compiled pipeline (no embedded code, no SDK version)."""
    spec = load_documents(path)[0]  # the second document, when present, is the platform spec
    structure = {"name": spec["pipelineInfo"]["name"], "inputs": sorted(spec["root"].get("inputDefinitions", {})
                                                                         .get("parameters", {})), "dags": {}}
    graphs = {"root": spec["root"], **spec["components"]}
    for name, component in sorted(graphs.items()):
        dag = component.get("dag")
        if not dag:
            continue
        structure["dags"][name] = {
            task_name: {
                "component": task["componentRef"]["name"],
                "depends_on": sorted(task.get("dependentTasks", [])),
                "condition": task.get("triggerPolicy", {}).get("condition", ""),
                "trigger": task.get("triggerPolicy", {}).get("strategy", ""),
                "caching": task.get("cachingOptions", {}).get("enableCache", False),
                "retries": task.get("retryPolicy", {}).get("maxRetryCount", 0),
                "parameters": sorted(task.get("inputs", {}).get("parameters", {})),
                "artifacts": sorted(task.get("inputs", {}).get("artifacts", {})),
            }
            for task_name, task in sorted(dag["tasks"].items())
        }
    structure["executors"] = {
        name: {"image": executor["container"]["image"],
               "resources": executor["container"].get("resources", {})}
        for name, executor in sorted(spec["deploymentSpec"]["executors"].items())
    }
    structure["secrets"] = platform_secrets(path)
    return structure


def load_documents(path: str | Path) -> list:
    """Every YAML document of a compiled file (the pipeline spec and its platform spec)."""
    return list(yaml.safe_load_all(Path(path).read_text()))


def platform_secrets(path: str | Path) -> dict:
    """Executor name -> secret names it reads (from the Kubernetes platform spec)."""
    documents = load_documents(path)
    secrets = {}
    for document in documents[1:]:
        executors = (document or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
        for name, config in executors.items():
            secrets[name] = sorted(entry["secretName"] for entry in config.get("secretAsEnv", []))
    return secrets


def function_secrets(path: str | Path) -> dict:
    """Component function name -> the secrets its tasks read (union over its executors)."""
    spec = load_documents(path)[0]
    by_executor = platform_secrets(path)
    functions = {}
    for name, executor in spec["deploymentSpec"]["executors"].items():
        args = executor.get("container", {}).get("args", [])
        if "--function_to_execute" in args:
            function = args[args.index("--function_to_execute") + 1]
            functions.setdefault(function, set()).update(by_executor.get(name, []))
    return functions
