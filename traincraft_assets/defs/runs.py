"""How a long step ends when a person stops it, or when its training diverges.

Dagster ends a run CANCELED when it finds the run CANCELING as the interrupt arrives (a stop
from the UI), and FAILURE otherwise. Ctrl-C on `dagster asset materialize` is a person stopping
the run too, so the long steps mark it CANCELING first; the trainer stops MACE on the way out.
A diverged training fails without a retry: the same training started again diverges again.
"""

import contextlib

import dagster as dg

from traincraft_assets.core.training import TrainingDiverged


@contextlib.contextmanager
def training_step(context: dg.AssetExecutionContext, what: str = ""):
    """Wrap the part of a step that trains; `what` prefixes a divergence message (an arm's name)."""
    try:
        yield
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        run = context.instance.get_run_by_id(context.run.run_id)
        if run is not None and run.status not in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
            context.instance.report_run_canceling(run, message="stopped with Ctrl-C")
        raise
    except TrainingDiverged as exc:
        raise dg.Failure(description=f"{what}{exc}", allow_retries=False) from exc
