"""core.settings: the one place the environment is read."""

import shlex

import pytest

from traincraft_assets.core.settings import SettingsError, load_settings


def test_defaults_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.store == tmp_path / ".traincraft" / "store"
    assert settings.inbox == tmp_path / ".traincraft" / "inbox"
    assert settings.deployment == "local" and settings.train_command is None


def test_every_variable_is_read(tmp_path):
    command = f"torchrun --nproc_per_node 4 '{tmp_path}/my mace/run_train.py'"
    settings = load_settings(
        {
            "TRAINCRAFT_STORE": str(tmp_path / "s"),
            "TRAINCRAFT_INBOX": "relative/inbox",
            "TRAINCRAFT_DEPLOYMENT": "k8s",
            "TRAINCRAFT_MACE_TRAIN_COMMAND": command,
        }
    )
    assert settings.store == tmp_path / "s"
    assert settings.inbox.is_absolute() and settings.inbox.parts[-2:] == ("relative", "inbox")
    assert settings.deployment == "k8s"
    assert settings.train_command == tuple(shlex.split(command))


def test_process_environment_is_read_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINCRAFT_STORE", str(tmp_path / "env_store"))
    assert load_settings().store == tmp_path / "env_store"
    monkeypatch.setenv("TRAINCRAFT_STORE", str(tmp_path / "other"))
    assert load_settings().store == tmp_path / "other"


def test_unknown_deployment_is_refused_with_the_choices():
    with pytest.raises(SettingsError) as info:
        load_settings({"TRAINCRAFT_DEPLOYMENT": "kubernetes"})
    message = str(info.value)
    assert "TRAINCRAFT_DEPLOYMENT" in message and "'kubernetes'" in message and "'k8s'" in message


def test_training_processes_default_to_one_and_must_be_a_count():
    assert load_settings({}).training_processes == 1
    assert load_settings({"TRAINCRAFT_TRAINING_PROCESSES": "4"}).training_processes == 4
    for bad in ("0", "two", "-1"):
        with pytest.raises(SettingsError, match="TRAINCRAFT_TRAINING_PROCESSES"):
            load_settings({"TRAINCRAFT_TRAINING_PROCESSES": bad})


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_inbox_settle_time_must_be_seconds(value):
    assert load_settings({}).inbox_settle_s == 10.0
    assert load_settings({"TRAINCRAFT_INBOX_SETTLE_S": "0.5"}).inbox_settle_s == 0.5
    with pytest.raises(SettingsError) as info:
        load_settings({"TRAINCRAFT_INBOX_SETTLE_S": value})
    assert "TRAINCRAFT_INBOX_SETTLE_S" in str(info.value) and repr(value) in str(info.value)


def test_retraining_settings():
    settings = load_settings({})
    assert (settings.retrain_debounce_s, settings.nightly_retrain_cron, settings.run_config) == (
        600.0,
        "0 2 * * *",
        None,
    )
    settings = load_settings({"TRAINCRAFT_RETRAIN_DEBOUNCE_S": "30", "TRAINCRAFT_RUN_CONFIG": "run.yaml"})
    assert settings.retrain_debounce_s == 30.0 and settings.run_config.is_absolute()
    with pytest.raises(SettingsError, match=r"TRAINCRAFT_RETRAIN_DEBOUNCE_S.*'an hour'"):
        load_settings({"TRAINCRAFT_RETRAIN_DEBOUNCE_S": "an hour"})
