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
