"""The reelops pipelines: training, batch scoring, and monitoring with retraining.

What KFP users expect is set on purpose:
- caching keyed on the dataset version: the steps after validation take the version id as
  an input, so the same data re-uses their results; steps that read the outside world
  (ingest, gate, register, batch predict, drift detection) never cache;
- CPU and memory requests on every step; retries on the steps that touch the network;
- credentials for MLflow and object storage from Kubernetes secrets (kfp-kubernetes), on
  exactly the steps that reach those services; the dataset store URL comes with the
  object-store secret (``reelops.cluster``);
- steps exchange data only through artifacts and those services, never a shared disk (each
  task is its own pod; ``reelops pipeline run --isolated`` proves it on one machine);
- an exit handler that records the run's outcome whatever happens.
"""

from kfp import dsl, kubernetes

from reelops.blessing import BLESSED
from reelops.cluster import MLFLOW_SECRET, SECRET_ENV, STORAGE_SECRET
from reelops.registry import PRODUCTION
from reelops.components.image import IMAGE, IMAGE_ID
from reelops.components import (
    batch_predict, combine_datasets, detect_drift, engineer_features, evaluate, gate, ingest, record_outcome, register,
    train, validate,
)

DEFAULT_SOURCE = "simulate:scenario=none,seed=7"


def _resources(task, cpu: str, memory: str, cache: bool):
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    task.set_caching_options(cache)
    # A container cannot learn its own image: the steps record these in the registry's lineage.
    task.set_env_variable("REELOPS_IMAGE", IMAGE)
    if IMAGE_ID:
        task.set_env_variable("REELOPS_IMAGE_ID", IMAGE_ID)
    return task


def _with_secrets(task, mlflow: bool = True, storage: bool = True):
    """Mount the service secrets a step needs (optional: the step itself names a missing one).

    A step that reaches MLflow also gets the object-store secret: model artifacts may live
    in the bucket behind the tracking server's artifact root.
    """
    if mlflow:
        kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env=SECRET_ENV[MLFLOW_SECRET],
                                     optional=True)
    if storage:
        kubernetes.use_secret_as_env(task, secret_name=STORAGE_SECRET, secret_key_to_env=SECRET_ENV[STORAGE_SECRET],
                                     optional=True)
    return task


def _ingest_and_validate(source, max_bad_share):
    """ingest -> validate: the raw source becomes a dataset version (shared by two pipelines)."""
    raw = _with_secrets(_resources(ingest(source=source), "1", "2G", cache=False), mlflow=False)
    raw.set_retry(3, backoff_duration="30s")
    # validate writes the version to the dataset store (REELOPS_STORE, from the object-store secret).
    return _with_secrets(_resources(validate(raw=raw.outputs["raw"], max_bad_share=max_bad_share), "1", "4G",
                                    cache=False), mlflow=False)


def _train_gate_register(dataset, dataset_version, algorithm: str, holdout: str, parameters_json: str, pipeline_name: str):
    """features -> train -> evaluate -> gate -> (if blessed) register: shared by two pipelines."""
    features = _resources(engineer_features(dataset=dataset, dataset_version=dataset_version, holdout=holdout),
                          "1", "2G", cache=True)
    trained = _resources(train(dataset=dataset, features=features.outputs["features"], dataset_version=dataset_version,
                               algorithm=algorithm, holdout=holdout, parameters_json=parameters_json), "2", "6G",
                         cache=True)
    _resources(evaluate(model=trained.outputs["model"], dataset=dataset, dataset_version=dataset_version),
               "1", "2G", cache=True)
    # The gate compares with whatever is in production now: never cached.
    gated = _with_secrets(_resources(gate(model=trained.outputs["model"], dataset=dataset), "1", "4G", cache=False))
    with dsl.If(gated.outputs["Output"] == BLESSED, name="blessed"):
        registered = register(candidate=gated.outputs["candidate"], pipeline_name=pipeline_name,
                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        _with_secrets(_resources(registered, "1", "2G", cache=False)).set_retry(3, backoff_duration="30s")
    return gated


@dsl.pipeline(name="reelops-training",
              description="Ingest, validate, engineer features, train, evaluate, gate and register a movie recommender.")
def training_pipeline(source: str = DEFAULT_SOURCE, algorithm: str = "hybrid", holdout: str = "user-time-20",
                      parameters_json: str = "{}", max_bad_share: float = 0.01):
    """The training pipeline.

    Args:
        source: raw data: folder, .zip, URL, ``movielens-100k`` or ``simulate:scenario=...,seed=...``.
        algorithm: the recommender to train.
        holdout: the held-out split (``user-time-20`` or ``none``).
        parameters_json: algorithm parameters, a JSON object.
        max_bad_share: the validation limit of bad rows.
    """
    outcome = _with_secrets(_resources(record_outcome(pipeline="reelops-training"), "0.5", "1G", cache=False))
    with dsl.ExitHandler(outcome, name="guarded"):
        validated = _ingest_and_validate(source, max_bad_share)
        _train_gate_register(validated.outputs["dataset"], validated.outputs["dataset_version"], algorithm, holdout,
                             parameters_json, "reelops-training")


@dsl.pipeline(name="reelops-batch-scoring",
              description="Top-K recommendations for every user from the model under an alias, as Parquet.")
def batch_scoring_pipeline(alias: str = PRODUCTION, k: int = 10):
    """The batch-scoring pipeline.

    Args:
        alias: the registry alias of the model that scores.
        k: recommendations per user.
    """
    outcome = _with_secrets(_resources(record_outcome(pipeline="reelops-batch-scoring"), "0.5", "1G", cache=False))
    with dsl.ExitHandler(outcome, name="guarded"):
        scored = _with_secrets(_resources(batch_predict(alias=alias, k=k), "2", "4G", cache=False))
        scored.set_retry(3, backoff_duration="30s")


@dsl.pipeline(name="reelops-monitoring",
              description="Drift detection on new data against production; retrains on the combined data when the policy says so.")
def monitoring_pipeline(new_source: str = "simulate:scenario=population_shift,seed=7", alias: str = PRODUCTION,
                        min_new_labels: int = 1000, cooldown_days: float = 7.0, algorithm: str = "hybrid",
                        holdout: str = "user-time-20", parameters_json: str = "{}", max_bad_share: float = 0.01):
    """The monitoring pipeline.

    Args:
        new_source: the new data (any source ``ingest`` reads).
        alias: the watched model.
        min_new_labels: the least new labelled ratings a retrain needs.
        cooldown_days: data time between two retrain triggers.
        algorithm, holdout, parameters_json: the retrain's training settings.
        max_bad_share: the validation limit of bad rows.
    """
    outcome = _with_secrets(_resources(record_outcome(pipeline="reelops-monitoring"), "0.5", "1G", cache=False))
    with dsl.ExitHandler(outcome, name="guarded"):
        validated = _ingest_and_validate(new_source, max_bad_share)
        drift = _with_secrets(_resources(detect_drift(alias=alias, dataset=validated.outputs["dataset"],
                                                      min_new_labels=min_new_labels, cooldown_days=cooldown_days),
                                         "1", "4G", cache=False))
        with dsl.If(drift.outputs["Output"] == "retrain", name="retrain"):
            # The base dataset comes from the store the registry's lineage names.
            combined = _with_secrets(_resources(combine_datasets(alias=alias, new=validated.outputs["dataset"]),
                                                "1", "4G", cache=False))
            _train_gate_register(combined.outputs["dataset"], combined.outputs["dataset_version"], algorithm, holdout,
                                 parameters_json, "reelops-monitoring")
