"""Record outcome: the exit handler's step, run whatever happened to the pipeline."""

from kfp import dsl

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_outcome(pipeline: str, status: dsl.PipelineTaskFinalStatus):
    """Write the run's final state (and error, if any) to the workspace's outcome log.

    Args:
        pipeline: the pipeline name.
        status: filled in by KFP when the guarded steps end.
    """
    from reelops.steps import finish_task, record_outcome as work

    error = (status.error_message or "") if status.state != "SUCCEEDED" else ""
    print(work(pipeline, status.state, status.pipeline_job_resource_name, error))
    finish_task()
