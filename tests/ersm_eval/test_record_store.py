"""RecordStore: finished records kept in chunk files, read back only when they belong to this run."""

from __future__ import annotations

import numpy as np
import pytest

from ersm_core.errors import ConfigError
from ersm_eval.resume import RecordStore, store_folder


def _records(indices):
    idx = np.asarray(indices, dtype=np.int64)
    return {"index": idx, "correct": (idx[:, None] % 2 == 0).repeat(3, 1), "prob": idx.astype(np.float32) / 10}


def test_flushed_records_are_read_back_sorted_and_joined(tmp_path, monkeypatch):
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    out = tmp_path / "run"
    store = RecordStore(out, "deletion-m", {"settings": 1}, range(10), resume=False)
    store.flush(_records([7, 3]))
    store.flush(_records([7, 3, 5]))  # only 5 is new
    assert sorted(p.name for p in store_folder(out).glob("*.npz")) == ["deletion-m.r0.000000.npz", "deletion-m.r0.000001.npz"]

    again = RecordStore(out, "deletion-m", {"settings": 1}, range(10), resume=True)
    assert again.resumed == 3 and again.done_indices == {3, 5, 7}
    merged = again.merged(_records([0, 9]))
    assert merged["index"].tolist() == [0, 3, 5, 7, 9]
    assert np.array_equal(merged["prob"], np.asarray([0, 3, 5, 7, 9], np.float32) / 10)
    again.remove()
    assert not store_folder(out).exists()


def test_other_settings_a_foreign_folder_and_a_stray_chunk_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    out = tmp_path / "run"
    RecordStore(out, "p", {"seed": 0}, range(4), resume=False).flush(_records([1]))
    with pytest.raises(ConfigError, match="other seed"):
        RecordStore(out, "p", {"seed": 1}, range(4), resume=True)
    with pytest.raises(ConfigError, match="other indices"):
        RecordStore(out, "p", {"seed": 0}, range(3), resume=True)
    np.savez(store_folder(out) / "p.r0.000009.npz", **_records([99]))  # an image this run does not evaluate
    with pytest.raises(ConfigError, match="does not hold records of this run"):
        RecordStore(out, "p", {"seed": 0}, range(4), resume=True)
    # without --resume the store is the tool's own: discarded, and a new run starts
    fresh = RecordStore(out, "p", {"seed": 0}, range(4), resume=False)
    assert fresh.resumed == 0 and not list(store_folder(out).glob("*.npz"))

    foreign = tmp_path / "mine"
    store_folder(foreign).mkdir()
    (store_folder(foreign) / "notes.txt").write_text("a user's file")
    with pytest.raises(ConfigError, match="not written by ersm-eval"):
        RecordStore(foreign, "p", {}, range(4), resume=False)
    assert (store_folder(foreign) / "notes.txt").exists()


def test_the_flush_interval_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "3600")
    store = RecordStore(tmp_path / "run", "p", {}, range(4), resume=False)
    store.flush(_records([0]))
    assert not store_folder(tmp_path / "run").exists()  # not yet: the interval has not passed
    store.flush(_records([0]), force=True)  # Ctrl-C / SIGTERM: written at once
    assert len(list(store_folder(tmp_path / "run").glob("*.npz"))) == 1
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "soon")
    with pytest.raises(ConfigError, match="ERSM_EVAL_RESUME_SECONDS"):
        RecordStore(tmp_path / "x", "p", {}, range(4), resume=False)


def _chunk_indices(out, part):
    found = []
    for path in sorted(store_folder(out).glob(f"{part}.r*.npz")):
        with np.load(path, allow_pickle=False) as data:
            found.append(sorted(data["index"].tolist()))
    return found


def test_restrict_keeps_exactly_the_given_images_on_disk_and_goes_on_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    out = tmp_path / "run"
    store = RecordStore(out, "p", {}, range(10), resume=False)
    for batch in ([0, 1], [2, 3], [4, 5]):
        store.flush(_records(batch))
    again = RecordStore(out, "p", {}, range(10), resume=True)
    again.restrict({0, 1, 3, 9})  # 9 was never finished: nothing to keep of it
    assert again.done_indices == {0, 1, 3} and again.resumed == 3
    assert _chunk_indices(out, "p") == [[0, 1], [3]]  # the chunk of 4, 5 is gone, that of 2, 3 rewritten
    assert np.array_equal(again.done["prob"], np.asarray([0, 1, 3], np.float32) / 10)
    assert again.done["correct"].shape == (3, 3)
    again.flush(_records([0, 1, 3, 2, 4]))  # the images evaluated again are written once more, the kept ones not
    third = RecordStore(out, "p", {}, range(10), resume=True)
    assert third.done["index"].tolist() == [0, 1, 2, 3, 4]
    assert np.array_equal(third.merged(None)["prob"], np.arange(5, dtype=np.float32) / 10)
    third.restrict(set())
    assert third.done is None and third.resumed == 0 and _chunk_indices(out, "p") == []


def test_a_kill_during_restrict_leaves_no_image_twice_and_no_wrong_record(tmp_path, monkeypatch):
    import ersm_eval.resume as resume

    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    out = tmp_path / "run"
    store = RecordStore(out, "p", {}, range(12), resume=False)
    for batch in ([0, 1, 2], [3, 4, 5], [6, 7, 8]):
        store.flush(_records(batch))
    written = []

    def dies_after_one(path, data, _write=resume.atomic_write_bytes):
        if written:
            raise KeyboardInterrupt  # the process is stopped between two chunk rewrites
        written.append(path)
        return _write(path, data)

    monkeypatch.setattr(resume, "atomic_write_bytes", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        RecordStore(out, "p", {}, range(12), resume=True).restrict({0, 4, 7})
    monkeypatch.undo()
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    assert _chunk_indices(out, "p") == [[0], [3, 4, 5], [6, 7, 8]]  # the first rewritten, the others as they were
    assert not [p for p in store_folder(out).iterdir() if p.name.endswith(".tmp")]
    after = RecordStore(out, "p", {}, range(12), resume=True)  # readable: no image twice
    assert after.done["index"].tolist() == [0, 3, 4, 5, 6, 7, 8]
    assert np.array_equal(after.done["prob"], after.done["index"].astype(np.float32) / 10)  # each its own record
    after.restrict({0, 4, 7})  # the next resume restricts again
    assert _chunk_indices(out, "p") == [[0], [4], [7]] and after.done_indices == {0, 4, 7}
