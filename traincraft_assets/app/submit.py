"""`traincraft submit`: launch a run on a Dagster deployment through its GraphQL API, so the
deployment's run launcher runs it (on Kubernetes: as pods), and follow it if asked."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

TERMINAL = {"SUCCESS": 0, "FAILURE": 1, "CANCELED": 1}
IMPLICIT_ASSET_JOB = "__ASSET_JOB"  # Dagster's job for an ad-hoc asset selection
SUCCESS, FAILED, NOT_LAUNCHED = 0, 1, 2


def _trimmed(run_config: dict | None, select: list[str], job: str | None) -> dict:
    """A whole-graph config file cut to what the run executes: the selected assets, or the job's
    steps (the deployment runs this code, so the job is known here)."""
    config = dict(run_config or {})
    if select and "ops" in config:
        config["ops"] = {name: value for name, value in config["ops"].items() if name in select}
    elif job and "ops" in config:
        from traincraft_assets.defs.definitions import build_defs
        from traincraft_assets.defs.jobs import run_config_for

        defs = build_defs()
        if job in {j.name for j in defs.resolve_all_job_defs()}:
            config = run_config_for(defs.resolve_job_def(job), config)
    return config


def submit(
    url: str,
    select: list[str],
    job: str | None = None,
    partition: str | None = None,
    run_config: dict | None = None,
    wait: bool = False,
    poll_s: float = 2.0,
    say: Callable[[str], None] = print,
) -> int:
    """Launch the run; say its URL; with `wait`, each status change to the end. Returns the exit
    code: 0 success, 1 the run failed or was canceled, 2 it could not be launched."""
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parts = urlsplit(url if "://" in url else f"http://{url}")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    try:
        with urllib.request.urlopen(f"{base}/server_info", timeout=10):
            pass
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"traincraft: could not reach Dagster at {base} ({exc}). Is the webserver running and "
            "reachable from here (on a cluster: kubectl -n traincraft port-forward "
            "svc/<release>-dagster-webserver 3000:80, then --url http://localhost:3000)?",
            file=sys.stderr,
        )
        return NOT_LAUNCHED
    client = DagsterGraphQLClient(
        parts.hostname or "localhost",
        port_number=parts.port,
        use_https=parts.scheme == "https",
        path_prefix=parts.path.rstrip("/"),
    )
    try:
        run_id = client.submit_job_execution(
            job or IMPLICIT_ASSET_JOB,
            run_config=_trimmed(run_config, select, job),
            tags={"dagster/partition": partition} if partition else None,
            asset_selection=None if job else select,
        )
    except DagsterGraphQLClientError as exc:
        reason = exc.args[0] if exc.args else "unknown error"
        detail = getattr(exc, "body", None) or (exc.args[1] if len(exc.args) > 1 else "")
        print(f"traincraft: {base} refused the run: {reason}\n{detail}".rstrip(), file=sys.stderr)
        return NOT_LAUNCHED
    say(f"{base}/runs/{run_id}")
    if not wait:
        return SUCCESS
    status = None
    while status not in TERMINAL:
        time.sleep(poll_s)
        current = client.get_run_status(run_id).value
        if current != status:
            say(f"run {run_id}: {current}")
            status = current
    return TERMINAL[status]
