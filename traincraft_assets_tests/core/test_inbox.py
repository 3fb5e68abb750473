"""core.inbox: the rules for taking batch files in (shared by the CLI and the inbox sensor)."""

import pytest

from traincraft_assets.core.demo import write_target_batches
from traincraft_assets.core.frames import FrameError
from traincraft_assets.core.inbox import Inbox


@pytest.fixture
def batches(tmp_path):
    return write_target_batches(tmp_path / "batches", frames_per_kind=1)


def test_ingest_copies_each_file_whole_under_its_name(tmp_path, batches):
    inbox = Inbox(tmp_path / "inbox")
    taken = inbox.ingest(batches)
    assert [b.name for b in taken] == [p.name for p in batches]
    for source, batch in zip(batches, taken):
        assert batch.new and batch.n_frames == 2
        assert batch.path.read_bytes() == source.read_bytes() and inbox.batch_file(batch.name) == batch.path
    # no temp files; each batch's registration (its sha256) beside them
    assert sorted(p.name for p in inbox.path.iterdir()) == sorted([".registry", *(p.name for p in batches)])
    assert [inbox.registered(b.name)["sha256"] for b in taken] == [b.sha256 for b in taken]


def test_same_content_again_is_a_no_op(tmp_path, batches):
    inbox = Inbox(tmp_path / "inbox")
    first = inbox.ingest(batches[:1])[0]
    again = inbox.ingest(batches[:1])[0]
    assert not again.new and again.sha256 == first.sha256


def test_different_content_under_a_known_name_is_refused(tmp_path, batches):
    inbox = Inbox(tmp_path / "inbox")
    inbox.ingest(batches[:1])
    [other] = [p for p in write_target_batches(tmp_path / "b", frames_per_kind=1, seed=7) if p.name == batches[0].name]
    with pytest.raises(FrameError, match="Batches are immutable"):
        inbox.ingest([other])
    assert inbox.batch_file(batches[0].name).read_bytes() == batches[0].read_bytes()


def test_one_bad_file_refuses_the_whole_call(tmp_path, batches):
    broken = tmp_path / "broken.xyz"
    broken.write_text('3\nLattice="bad\n Cu 0 0 0\n')
    inbox = Inbox(tmp_path / "inbox")
    with pytest.raises(FrameError, match=r"broken\.xyz"):
        inbox.ingest([*batches, broken])
    assert not inbox.path.exists()


def test_two_files_with_one_name_are_refused(tmp_path, batches):
    [twin] = [p for p in write_target_batches(tmp_path / "b", frames_per_kind=1, seed=5) if p.name == batches[0].name]
    with pytest.raises(FrameError, match="rename"):
        Inbox(tmp_path / "inbox").ingest([batches[0], twin])


def test_a_registered_batch_whose_file_is_gone_says_how_to_recover(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        Inbox(tmp_path / "inbox").batch_file("lost.xyz")
    assert "lost.xyz" in str(info.value) and "traincraft ingest" in str(info.value)


def test_a_renamed_copy_is_the_batch_it_copies(tmp_path, batches):
    inbox = Inbox(tmp_path / "inbox")
    first = inbox.ingest(batches[:1])[0]
    copy = tmp_path / "renamed.xyz"
    copy.write_bytes(batches[0].read_bytes())
    [again] = inbox.ingest([copy])
    assert again.name == first.name and not again.new
    assert not (inbox.path / "renamed.xyz").exists()


def test_a_name_that_cannot_be_a_partition_is_refused(tmp_path, batches):
    odd = tmp_path / "a...b.xyz"
    odd.write_bytes(batches[0].read_bytes())
    with pytest.raises(FrameError, match=r"cannot be a batch name"):
        Inbox(tmp_path / "inbox").ingest([odd])


def test_a_retired_batch_is_refused_by_name_and_by_content_when_dropped_again(tmp_path, batches):
    inbox = Inbox(tmp_path / "inbox", settle_s=0)
    [batch] = inbox.ingest(batches[:1])
    moved = inbox.retire(batch.name, "wrong functional")
    assert moved.parent.name == ".retired" and not batch.path.exists()
    (inbox.path / batch.name).write_bytes(moved.read_bytes())
    (inbox.path / "renamed.xyz").write_bytes(moved.read_bytes())
    scan = inbox.scan(known=set(), seen={}, now=2e9)
    assert not scan.new and set(scan.refused) == {batch.name, "renamed.xyz"}
    assert all("was retired on" in why and "wrong functional" in why for why in scan.refused.values())
    with pytest.raises(FrameError, match="already retired"):
        inbox.retire(batch.name, "again")
    with pytest.raises(FrameError, match="say why"):
        inbox.retire("other.xyz", " ")
