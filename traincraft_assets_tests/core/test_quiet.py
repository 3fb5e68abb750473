"""Warnings that tell a user nothing are filtered; others still show."""

import subprocess
import sys

PROGRAM = """
import warnings
import traincraft_assets
warnings.warn("Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected, since the weights_only argument ...", UserWarning)
warnings.warn("To copy construct from a tensor, it is recommended to use sourceTensor.detach().clone()", UserWarning)
warnings.warn("the labels look odd", UserWarning)
import logging
logging.warning("Default dtype float64 does not match model dtype float32, converting models to float64.")
logging.warning("%d", "a")  # a malformed call: logging reports it and the program goes on
logging.warning("the model looks odd")
"""


def test_only_unactionable_warnings_are_filtered_once_the_package_is_imported():
    # -W default: show every warning, as a fresh interpreter running the demo would
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", PROGRAM], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "the labels look odd" in result.stderr
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in result.stderr and "copy construct" not in result.stderr
    # MACE's root-logger line about the gates' float64 MD is dropped; other log lines are not
    assert "the model looks odd" in result.stderr and "does not match model dtype" not in result.stderr


def test_mace_s_own_process_gets_the_same_filters_through_pythonwarnings(monkeypatch):
    """MACE trains in a child process that does not import this package: its warnings reach the
    run log unless its PYTHONWARNINGS filters them. A user's own PYTHONWARNINGS still applies."""
    import os

    from traincraft_assets.core.quiet import child_warning_filters

    monkeypatch.setenv("PYTHONWARNINGS", "error::DeprecationWarning")
    child = (
        PROGRAM.replace("import traincraft_assets\n", "")
        + "\nimport warnings; warnings.warn('old', DeprecationWarning)\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": child_warning_filters()}
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, env=env)
    assert "the labels look odd" in result.stderr
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in result.stderr and "copy construct" not in result.stderr
    assert result.returncode != 0 and "DeprecationWarning: old" in result.stderr  # the user's filter: an error
    assert "Invalid -W option" not in result.stderr  # every filter parses (a comma in one would split it)
