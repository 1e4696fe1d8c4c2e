"""A study's record stores: one per checkpoint and evaluation, a study-level key, settled per bundle."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from ersm_core.errors import ConfigError
from ersm_eval.deletion import DeletionSettings
from ersm_eval.pipelines.study import STUDY_OCCLUSION
from ersm_eval.pipelines.study_resume import StudyStores
from ersm_eval.resume import store_folder

KINDS = ("deletion", "sparsity")


@dataclass
class _Transform:
    mean: tuple = (0.5,)
    std: tuple = (0.5,)


def _setups(**hashes):
    data = SimpleNamespace(transform=_Transform())
    return {label: SimpleNamespace(checkpoint=SimpleNamespace(sha256=sha), dataset=data, indices=list(range(8)),
                                   options={})
            for label, sha in hashes.items()}


def _open(out, resume, deletion=DeletionSettings(), **hashes):
    return StudyStores(out, _setups(**(hashes or {"a": "1" * 64, "b": "2" * 64})), "synthetic", "test", deletion,
                       STUDY_OCCLUSION, KINDS, 4, resume)


def _records(indices):
    idx = np.asarray(indices, dtype=np.int64)
    return {"index": idx, "value": idx * 10.0}


def test_a_bundle_goes_on_from_the_images_every_store_finished(tmp_path, monkeypatch):
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    out = tmp_path / "study"
    stores = _open(out, resume=False)
    finished = {("a", "deletion"): [0, 1, 2, 3], ("a", "sparsity"): [0, 1, 2],
                ("b", "deletion"): [0, 1, 2, 3], ("b", "sparsity"): [1, 2, 3]}
    for (label, kind), indices in finished.items():
        stores.stores[label][kind].flush(_records(indices[:2]))
        stores.stores[label][kind].flush(_records(indices))
    again = _open(out, resume=True)
    assert again.settle(["a", "b"]) == {1, 2}  # the images all four stores finished
    for by_kind in again.stores.values():
        for store in by_kind.values():
            assert store.done_indices == {1, 2}
            assert store.done["value"].tolist() == [10.0, 20.0]
    third = _open(out, resume=True)  # the chunks on disk hold exactly those
    assert {s.resumed for by_kind in third.stores.values() for s in by_kind.values()} == {2}
    assert third.settle(["a"]) == {1, 2}
    third.remove()
    assert not store_folder(out).exists()


def test_a_bundle_with_a_store_that_finished_nothing_starts_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    out = tmp_path / "study"
    stores = _open(out, resume=False)
    stores.stores["a"]["deletion"].flush(_records([0, 1]))
    stores.stores["b"]["deletion"].flush(_records([0, 1]))
    again = _open(out, resume=True)
    assert again.settle(["b"]) == set()  # b's sparsity finished nothing
    assert again.stores["b"]["deletion"].resumed == 0 and again.stores["a"]["deletion"].resumed == 2
    assert not list(store_folder(out).glob("deletion-b.*.npz"))


def test_other_checkpoints_or_settings_are_refused_and_a_fresh_study_discards_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("ERSM_EVAL_RESUME_SECONDS", "0")
    out = tmp_path / "study"
    _open(out, resume=False).stores["b"]["sparsity"].flush(_records([0]))
    with pytest.raises(ConfigError, match="other checkpoints"):
        _open(out, resume=True, a="1" * 64)  # b left out
    with pytest.raises(ConfigError, match="other checkpoints"):
        _open(out, resume=True, a="1" * 64, b="3" * 64)  # b is another file under the same name
    with pytest.raises(ConfigError, match="other settings"):
        _open(out, resume=True, deletion=DeletionSettings(seeds=(0,)))
    assert _open(out, resume=True).stores["b"]["sparsity"].resumed == 1  # refusals left the records alone
    fresh = _open(out, resume=False, a="1" * 64)  # without resume nothing of the old study lingers
    assert fresh.stores["a"]["deletion"].resumed == 0
    assert sorted(p.name for p in store_folder(out).iterdir() if not p.name.startswith(".")) == [
        "deletion-a.key.json", "sparsity-a.key.json", "study.key.json"]  # b's records and key are gone
