"""ArtifactStore: content-addressed, all-or-nothing artifacts."""

import hashlib
import os
import re
import time

import pytest

from traincraft_assets.core.artifacts import Dataset, FoundationModel, LabelledFrames, ReplaySubset, Split
from traincraft_assets.core.store import ArtifactStore, file_sha256, tree_sha256


def _fill(files: dict[str, bytes]):
    def fill(staging):
        for name, data in files.items():
            path = staging.path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return sorted(files)

    return fill


def _staging_leftovers(store: ArtifactStore) -> list:
    staging = store.root / ".staging"
    return list(staging.iterdir()) if staging.exists() else []


def test_write_publishes_under_asset_and_content_hash(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    artifact, result = store.write(Dataset, _fill({"frames.xyz": b"abc", "meta/info.json": b"{}"}))
    assert result == ["frames.xyz", "meta/info.json"]  # fill's return value comes back
    assert re.fullmatch(r"[0-9a-f]{64}", artifact.sha256)
    assert artifact.path == (tmp_path / "store" / "dataset" / artifact.sha256).absolute()
    assert (artifact.path / "frames.xyz").read_bytes() == b"abc"
    assert (artifact.path / "meta" / "info.json").read_bytes() == b"{}"
    assert artifact.sha256 == tree_sha256(artifact.path)
    assert _staging_leftovers(store) == []


def test_same_content_twice_gives_same_artifact_without_error(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    first, _ = store.write(Split, _fill({"train.xyz": b"1", "valid.xyz": b"2"}))
    second, _ = store.write(Split, _fill({"valid.xyz": b"2", "train.xyz": b"1"}))
    assert first == second
    assert [p.name for p in (tmp_path / "store" / "split").iterdir()] == [first.sha256]
    assert (second.path / "train.xyz").read_bytes() == b"1"
    assert _staging_leftovers(store) == []


def test_different_content_gives_a_different_artifact(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    a, _ = store.write(Split, _fill({"train.xyz": b"1"}))
    b, _ = store.write(Split, _fill({"train.xyz": b"2"}))
    assert a.sha256 != b.sha256 and a.path != b.path
    assert (a.path / "train.xyz").read_bytes() == b"1"


def test_failed_fill_leaves_nothing_behind(tmp_path):
    store = ArtifactStore(tmp_path / "store")

    def fill(staging):
        (staging.frames_path).write_text("partial")
        raise RuntimeError("labeller crashed")

    with pytest.raises(RuntimeError, match="labeller crashed"):
        store.write(LabelledFrames, fill)
    asset_dir = tmp_path / "store" / "labelled_frames"
    assert not asset_dir.exists() or list(asset_dir.iterdir()) == []
    assert _staging_leftovers(store) == []


def test_tree_sha256_tracks_bytes_and_names(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_bytes(b"hello")
    (d / "sub").mkdir()
    (d / "sub" / "b.txt").write_bytes(b"world")
    base = tree_sha256(d)
    assert tree_sha256(d) == base  # deterministic

    (d / "a.txt").write_bytes(b"hellO")
    changed = tree_sha256(d)
    assert changed != base

    (d / "a.txt").write_bytes(b"hello")
    assert tree_sha256(d) == base
    (d / "sub" / "b.txt").rename(d / "sub" / "c.txt")
    assert tree_sha256(d) != base


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_open_returns_published_artifact(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    artifact, _ = store.write(ReplaySubset, _fill({"replay.xyz": b"x"}))
    reopened = ArtifactStore(tmp_path / "store").open(ReplaySubset, artifact.sha256)
    assert reopened == artifact and isinstance(reopened, ReplaySubset)


def test_open_unknown_sha_explains(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    missing = "0" * 64
    with pytest.raises(FileNotFoundError) as info:
        store.open(FoundationModel, missing)
    message = str(info.value)
    assert "foundation_model" in message and missing in message
    assert str(store.root) in message
    assert "TRAINCRAFT_STORE" in message  # tells the user what to check


def test_staging_of_a_dead_writer_is_removed_by_the_next_write_and_a_live_ones_is_kept(tmp_path):
    import socket
    import subprocess
    import sys

    store = ArtifactStore(tmp_path)
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".staging" / f"dataset-{host}-{int(dead.stdout)}-abc123").mkdir(parents=True)
    live = tmp_path / ".staging" / f"dataset-{host}-{os.getpid()}-def456"
    live.mkdir()
    other_host = tmp_path / ".staging" / "dataset-some-pod-7-ghi789"  # another pod: judged by age
    other_host.mkdir()
    assert [p.name for p in store.stale_staging()] == [f"dataset-{host}-{int(dead.stdout)}-abc123"]
    assert other_host in store.stale_staging(now=time.time() + 2 * 24 * 3600)

    store.write(Dataset, lambda out: out.frames_path.write_text("frames"))
    assert sorted(p.name for p in (tmp_path / ".staging").iterdir()) == sorted([live.name, other_host.name])


def test_verify_reports_changed_artifacts_unknown_folders_and_stale_staging(tmp_path):
    from traincraft_assets.core.artifacts import CATALOGUE

    store = ArtifactStore(tmp_path)
    store.write(Dataset, lambda out: out.frames_path.write_text("frames"))
    tampered, _ = store.write(Dataset, lambda out: out.frames_path.write_text("other frames"))
    assert store.verify(CATALOGUE) == []
    tampered.frames_path.write_text("edited by hand")
    (tmp_path / "old_asset" / "abc").mkdir(parents=True)
    problems = {path.name: why for path, why in store.verify(CATALOGUE)}
    assert set(problems) == {tampered.sha256, "old_asset"}
    assert "content changed since it was published" in problems[tampered.sha256]
    assert "not an asset of this project" in problems["old_asset"]
