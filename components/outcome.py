"""Record outcome: the exit handler's step, run whatever happened to the pipeline."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_outcome(pipeline: str, status: dsl.PipelineTaskFinalStatus, outcome: Output[Artifact]):
    """Record the run's final state (and error, if any) in MLflow and as an artifact.

    Args:
        pipeline: the pipeline name.
        status: filled in by KFP when the guarded steps end.
        outcome: the outcome as JSON (also an MLflow run of ``reelops-pipeline-runs``).
    """
    from reelops.steps import finish_task, record_outcome as work

    error = (status.error_message or "") if status.state != "SUCCEEDED" else ""
    entry = work(pipeline, status.state, status.pipeline_job_resource_name, error, outcome.path)
    outcome.metadata.update(entry)
    print(entry)
    finish_task()
