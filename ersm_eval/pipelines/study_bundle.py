"""Evaluate several checkpoints that share a frozen backbone with one backbone pass per image.

The checkpoints of a *bundle* have equal :func:`~ersm_eval.shared_features.backbone_key`.
Every evaluation of every member (deletion, sparsity, occlusion) is the ordinary
``evaluate_*`` function, run in its own thread on a feed of batches; the main thread
reads each batch of images once, computes its backbone features once through the
bundle's :class:`~ersm_eval.shared_features.SharedBackbone`, hands the batch to every
feed and waits until every evaluation has taken it in before the next batch
(lock step, so the memo holds one batch of work). Deletion gets the precomputed
``features`` batch; sparsity and occlusion get the images, and their backbone passes
(clean chunks, occluded images) are answered from the memo after the first member
computed them. The numbers are those of separate runs, bit for bit: each evaluation
sees the same batches and the same features it would compute itself.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import replace
from typing import Any, Callable, Sequence

from ersm_eval.api.batches import DatasetBatches
from ersm_eval.context import EvalSetup, Progress, check_finite, iterate_batches
from ersm_eval.forward import fixed_chunks
from ersm_eval.shared_features import shared_backbone

__all__ = ["evaluate_bundle", "EVALUATIONS"]

EVALUATIONS = ("deletion", "sparsity", "occlusion")
_END = object()


class _Feed(threading.Thread):
    """One evaluation of one member, fed batch by batch from the main thread."""

    def __init__(self, label: str, kind: str, run: Callable[[DatasetBatches], Any], setup: EvalSetup) -> None:
        super().__init__(daemon=True, name=f"study-{kind}-{label}")
        self.label, self.kind, self._run, self._setup = label, kind, run, setup
        self._items: queue.Queue = queue.Queue()
        self._taken = threading.Semaphore(0)
        self.result: Any = None
        self.error: BaseException | None = None

    def _batches(self):
        while True:
            item = self._items.get()
            if item is _END:
                return
            yield item
            self._taken.release()  # asked for the next one: this batch is done

    def run(self) -> None:
        data = self._setup.dataset
        source = DatasetBatches(self._batches(), self._setup.indices, bool(data.has_masks or data.has_boxes), data,
                                tuple(data.transform.mean), tuple(data.transform.std))
        try:
            self.result = self._run(source)
        except BaseException as err:  # handed to the main thread
            self.error = err
        finally:
            self._taken.release()

    def give(self, batch: dict[str, Any]) -> None:
        self._items.put(batch)

    def wait(self) -> None:
        """Until this batch is taken in; re-raise the evaluation's error."""
        self._taken.acquire()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self._items.put(_END)
        self.join()


def _runner(kind: str, model: Any, label: str, names: list[str], deletion: Any, occlusion: Any,
            batch_size: int) -> Callable[[DatasetBatches], Any]:
    from ersm_eval.api import evaluate_deletion, evaluate_occlusion, evaluate_sparsity

    if kind == "deletion":
        settings = replace(deletion, label=label)
        return lambda b: evaluate_deletion(model, b, settings=settings, class_names=names, verify=False)
    if kind == "sparsity":
        return lambda b: evaluate_sparsity(model, b, label=label, class_names=names, verify=False)
    return lambda b: evaluate_occlusion(model, b, settings=occlusion, label=label, class_names=names,
                                        batch_size=batch_size, verify=False)


def evaluate_bundle(setups: Sequence[EvalSetup], labels: Sequence[str], deletion: Any, occlusion: Any,
                    skip: Sequence[str] = (), batch_size: int = 32, workers: int = 0,
                    advance: Progress | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Every evaluation of every member of one bundle, with one backbone pass per distinct input.

    Args:
        setups: the members' :class:`~ersm_eval.context.EvalSetup` (equal backbone key; the
            first one's dataset and images are read).
        labels: the members' names.
        deletion: the deletion settings (feature level), labelled per member.
        occlusion: the occlusion settings.
        skip: evaluations left out (sparsity, occlusion).
        batch_size, workers: as for the pipelines.
        advance: called with the number of images of each batch, once every evaluation took it.

    Returns:
        ({label: {evaluation: EvaluationResult}}, {"backbone_passes": ..., "shared_hits": ...}).
    """
    lead = setups[0]
    names = list(lead.checkpoint.class_names)
    kinds = [k for k in EVALUATIONS if k not in skip]
    feeds = [_Feed(label, kind, _runner(kind, s.model, label, names, deletion, occlusion, batch_size), s)
             for s, label in zip(setups, labels) for kind in kinds]
    with shared_backbone([s.model for s in setups]) as shared:
        for feed in feeds:
            feed.start()
        try:
            for batch in iterate_batches(lead.dataset, lead.indices, batch_size, workers, lead.device, None):
                shared.clear()
                features = fixed_chunks(shared, batch["image"])
                check_finite(features, batch["index"], "backbone features")
                plain = {"features": features, "label": batch["label"], "index": batch["index"]}
                for feed in feeds:
                    feed.give(plain if feed.kind == "deletion" else batch)
                for feed in feeds:
                    feed.wait()
                if advance is not None:
                    advance(len(batch["index"]))
        finally:
            for feed in feeds:
                feed.close()
            shared.clear()
    for feed in feeds:
        if feed.error is not None:
            raise feed.error
    results: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for feed in feeds:
        results[feed.label][feed.kind] = feed.result
    return results, {"backbone_passes": shared.passes, "shared_hits": shared.hits}
