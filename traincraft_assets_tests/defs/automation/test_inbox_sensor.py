"""inbox_sensor, evaluated as the daemon does: a fresh context per tick, the cursor read back
from the previous tick's result, partitions added from its requests. Real files, a real
instance; 200 good files arrive in bursts among duplicates, renamed copies, changed files,
half-written files, malformed files, a directory and a symlink to a file outside the inbox."""

import json
import logging
import os
import shutil
import time
from pathlib import Path

import dagster as dg

from traincraft_assets.core.frames import write_frames
from traincraft_assets.defs.automation.sensors import inbox_sensor
from traincraft_assets.defs.partitions import data_batches
from traincraft_assets.defs.resources import InboxResource
from traincraft_assets_tests.core.helpers import labelled, random_pair

SETTLE_S = 5.0
SECRET = "SECRET_OUTSIDE_THE_INBOX"


def _batch(path: Path, seed: int, config_type: str = "bulk") -> Path:
    write_frames(path, [labelled(random_pair(seed), energy=-1.0 - seed, config_type=config_type)])
    return path


def _settled(*paths: Path) -> None:
    """As if written a minute ago."""
    past = time.time() - 60
    for path in paths:
        os.utime(path, (past, past), follow_symlinks=False)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


class Daemon:
    """Runs the sensor the way the daemon does and keeps what it asked for."""

    def __init__(self, instance, inbox: Path):
        self.instance, self.inbox = instance, inbox
        self.cursor = None
        self.run_keys: list[str] = []
        self.partitions_requested: list[str] = []

    def tick(self) -> list[str]:
        """One evaluation; returns the warnings it logged."""
        collect = _Collect()
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"inbox": InboxResource(path=str(self.inbox), settle_s=SETTLE_S)},
        ) as context:
            context.log.addHandler(collect)  # what the UI's tick log shows
            result = inbox_sensor(context)
        self.cursor = json.loads(json.dumps(result.cursor))  # stored as text by the instance
        for request in result.dynamic_partitions_requests or []:
            self.partitions_requested += list(request.partition_keys)
            self.instance.add_dynamic_partitions(data_batches.name, list(request.partition_keys))
        for run in result.run_requests or []:
            self.run_keys.append(run.run_key)
            assert run.partition_key in self.instance.get_dynamic_partitions(data_batches.name)
        return [r.getMessage() for r in collect.records]


def test_two_hundred_files_in_bursts_become_two_hundred_batches_exactly_once(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = _batch(tmp_path / "outside.xyz", 9999, config_type=SECRET)
    good: list[str] = []
    reports: list[str] = []

    with dg.instance_for_test() as instance:
        daemon = Daemon(instance, inbox)

        # burst 1: 90 good files, 3 malformed, a directory, a symlink out, 2 still being written
        for i in range(90):
            good.append(_batch(inbox / f"b{i:03d}.xyz", i).name)
        (inbox / "broken_1.xyz").write_text("this is not a structure file\n")
        (inbox / "broken_2.xyz").write_bytes(b"\xff\xfe\x00binary\x00")
        (inbox / "broken_3.xyz").write_text("")
        (inbox / "a_folder").mkdir()
        (inbox / "link.xyz").symlink_to(outside)
        _settled(*inbox.iterdir())
        writing = [inbox / "late_1.xyz", inbox / "late_2.xyz"]
        for path in writing:
            path.write_text((_batch(tmp_path / path.name, 500).read_text())[:40])  # half written, just now
        for _ in range(3):
            reports += daemon.tick()
        assert set(instance.get_dynamic_partitions(data_batches.name)) == set(good)

        # burst 2: the half-written files complete; 60 more good files; 4 renamed copies of known
        # batches; 3 known files changed; 2 known files copied again unchanged (same name)
        before = set(inbox.iterdir())
        for n, path in enumerate(writing):
            _batch(path, 500 + n)
            good.append(path.name)
        for i in range(90, 150):
            good.append(_batch(inbox / f"b{i:03d}.xyz", i).name)
        for i in range(4):
            shutil.copyfile(inbox / f"b{i:03d}.xyz", inbox / f"copy_of_b{i:03d}.xyz")
        touched = [_batch(inbox / f"b{i:03d}.xyz", 1000 + i) for i in (10, 11, 12)]
        for i in (20, 21):
            shutil.copyfile(inbox / f"b{i:03d}.xyz", tmp_path / "again.xyz")
            shutil.copyfile(tmp_path / "again.xyz", inbox / f"b{i:03d}.xyz")
            touched.append(inbox / f"b{i:03d}.xyz")
        _settled(*(set(inbox.iterdir()) - before), *writing, *touched)
        for _ in range(3):
            reports += daemon.tick()

        # burst 3: the rest, one written under a dot name and renamed into place when done
        before = set(inbox.iterdir())
        for i in range(150, 197):
            good.append(_batch(inbox / f"b{i:03d}.xyz", i).name)
        _batch(inbox / ".b198.xyz.partial", 198)
        _settled(*(set(inbox.iterdir()) - before))
        reports += daemon.tick()
        os.replace(inbox / ".b198.xyz.partial", inbox / "b198.xyz")
        good.append("b198.xyz")
        for _ in range(3):
            reports += daemon.tick()

        # a daemon restart: a new evaluation from the stored cursor changes nothing
        reports += daemon.tick()

    assert len(good) == 200
    assert sorted(daemon.partitions_requested) == sorted(good)  # every good file, none twice
    assert len(daemon.run_keys) == len(set(daemon.run_keys)) == 200
    expected = {
        "broken_1.xyz": "ASE could not read it (XYZError",
        "broken_2.xyz": "this is a binary file, not extxyz text",
        "broken_3.xyz": "the file is empty",
        "a_folder": "not a regular file",
        "link.xyz": "is a symbolic link",
        **{f"copy_of_b{i:03d}.xyz": f"same content as batch 'b{i:03d}.xyz'" for i in range(4)},
        **{f"b{i:03d}.xyz": "already registered with different content" for i in (10, 11, 12)},
    }
    for name, reason in expected.items():
        mine = [r for r in reports if f"/{name}" in r]
        assert len(mine) == 1, f"{name}: reported {len(mine)} times: {mine}"
        assert reason in mine[0], mine[0]
    assert len(reports) == len(expected), [r for r in reports if not any(f"/{n}" in r for n in expected)]
    everything = json.dumps([reports, daemon.cursor, daemon.partitions_requested]) + "".join(
        p.read_text() for p in (inbox / ".registry").glob("*.json")
    )
    assert SECRET not in everything and "outside.xyz" not in everything


def test_a_batch_edited_after_registration_is_refused_when_labelled(tmp_path):
    """Integrity at use: labelled_frames re-hashes the inbox file and refuses changed content."""
    from traincraft_assets_tests.conftest import Project

    with dg.instance_for_test() as instance:
        project = Project(tmp_path, instance)
        project.inbox.mkdir(parents=True)
        daemon = Daemon(instance, project.inbox)
        _settled(_batch(project.inbox / "b.xyz", 1))
        daemon.tick()
        _batch(project.inbox / "b.xyz", 2)  # edited in place afterwards
        result = project.defs.resolve_job_def("label_batch").execute_in_process(
            instance=instance, partition_key="b.xyz", raise_on_error=False
        )
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.to_string()
        assert "the file changed after batch 'b.xyz' was registered" in message
        assert project.latest("labelled_frames", "b.xyz") is None
