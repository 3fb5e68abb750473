"""How a run ends when a person stops it from a shell.

Dagster ends a run CANCELED when it finds the run CANCELING as the interrupt arrives (a stop
from the UI), and FAILURE otherwise. Ctrl-C on `dagster asset materialize` is a person stopping
the run too, so the long steps mark it CANCELING first; the trainer stops MACE on the way out.
"""

import contextlib

import dagster as dg


@contextlib.contextmanager
def canceled_on_interrupt(context: dg.AssetExecutionContext):
    try:
        yield
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        run = context.instance.get_run_by_id(context.run.run_id)
        if run is not None and run.status not in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
            context.instance.report_run_canceling(run, message="stopped with Ctrl-C")
        raise
