"""Resuming an interrupted study: one record store per checkpoint and evaluation, settled per bundle.

A study keeps the finished images' records of every evaluation of every checkpoint in its
own :class:`~ersm_eval.resume.RecordStore` (part ``<evaluation>-<checkpoint>``) in the
study's resume folder, ``.<out>.resume/`` beside the study folder, keyed like a single
evaluation's (checkpoint hash, dataset, split, transform, images, settings). One more
part, ``study``, holds no records: its key is the study's checkpoints (name → hash) and
evaluations, so a resume with another list of checkpoints is refused as a whole.

The members of a backbone bundle run in lock step and flush their stores at the same batch
boundary, but a kill between two of those writes can leave them with different finished
images. :meth:`StudyStores.settle` takes, per bundle, the images every store finished as
done and makes every store hold exactly those; the bundle evaluates the rest again for
every member.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ersm_eval.pipelines.common import resume_store

__all__ = ["StudyStores", "STUDY_PART"]

STUDY_PART = "study"  # the part keyed by the study's checkpoints and evaluations (no records)


def _settings(kind: str, label: str, deletion: Any, occlusion: Any, batch_size: int) -> tuple[Any, dict[str, Any]]:
    """What decides one evaluation's records besides the checkpoint and the images: (settings, extra key
    fields), as the single evaluations key them."""
    if kind == "deletion":
        return replace(deletion, label=label), {}
    if kind == "sparsity":
        return {"label": label}, {}
    return occlusion, {"batch_size": batch_size}


class StudyStores:
    """The record stores of a study writing ``out``.

    Opening them checks a resume before any image is read: another list of checkpoints
    (or evaluations) than the interrupted study's is refused naming ``checkpoints``, other
    settings naming them (per evaluation). Every part's key is written at once, so any
    other option is refused even where no record was written yet. Without ``resume`` the
    whole old folder is discarded.

    Args:
        out: the study folder.
        setups: label -> :class:`~ersm_eval.context.EvalSetup`, in the study's order.
        dataset, split: the evaluated data.
        deletion, occlusion: the study's settings (deletion labelled per checkpoint).
        kinds: the evaluations run (deletion, sparsity, occlusion but the skipped).
        batch_size: images per batch (recorded with the occlusion settings, as a single run does).
        resume: read what an interrupted study finished.

    Attributes:
        stores: {label: {evaluation: RecordStore}}.
    """

    def __init__(self, out: Path, setups: dict[str, Any], dataset: str, split: str, deletion: Any, occlusion: Any,
                 kinds: Sequence[str], batch_size: int, resume: bool) -> None:
        from ersm_eval.resume import RecordStore

        first = next(iter(setups.values()))
        key = {"checkpoints": {label: s.checkpoint.sha256 for label, s in setups.items()},
               "evaluations": list(kinds)}
        self._study = RecordStore(out, STUDY_PART, key, first.indices, resume)  # refuses other checkpoints first
        if not self._study.found:  # nothing of this study to resume: no part of an old one may linger
            self._study.remove()
        self.stores: dict[str, dict[str, Any]] = {}
        for label, setup in setups.items():
            self.stores[label] = {}
            for kind in kinds:
                settings, extra = _settings(kind, label, deletion, occlusion, batch_size)
                self.stores[label][kind] = resume_store(out, f"{kind}-{label}", setup, dataset, split, settings,
                                                        resume, **extra)
        for store in [self._study, *(s for by_kind in self.stores.values() for s in by_kind.values())]:
            store.write_key()  # every part is checked on resume, also one that had written no records yet

    def settle(self, labels: Sequence[str]) -> set[int]:
        """The images every store of the bundle ``labels`` finished; each store is restricted to exactly
        those (:meth:`~ersm_eval.resume.RecordStore.restrict`), the rest is evaluated again."""
        stores = [store for label in labels for store in self.stores[label].values()]
        done = set.intersection(*(store.done_indices for store in stores)) if stores else set()
        for store in stores:
            store.restrict(done)
        return done

    def remove(self) -> None:
        """Remove the resume folder once the study folder is written."""
        self._study.remove()
