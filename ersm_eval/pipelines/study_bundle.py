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

With resume stores (:mod:`ersm_eval.pipelines.study_resume`) every evaluation keeps its
finished records; the bundle decides once per batch whether the stores write (the
interval of :func:`~ersm_eval.resume.flush_seconds` has passed, or it is the bundle's last
batch), so every store of the bundle writes at the same batch boundary. On an
interruption (Ctrl-C, SIGTERM, an evaluation's error) every evaluation is stopped
before its next batch and writes what it finished. Images in ``done`` are not read again:
their records come from the stores.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

from ersm_eval.api.batches import DatasetBatches
from ersm_eval.context import EvalSetup, Progress, check_finite, iterate_batches
from ersm_eval.forward import fixed_chunks
from ersm_eval.occluders import shared_pattern_masks
from ersm_eval.shared_features import shared_backbone

__all__ = ["evaluate_bundle", "EVALUATIONS"]

EVALUATIONS = ("deletion", "sparsity", "occlusion")
_END = object()  # the batches are over: the evaluation computes its result
_STOP = object()  # the bundle was interrupted: the evaluation writes its finished records and stops


class _Stopped(BaseException):
    """Raised inside an evaluation's batches when the bundle is interrupted (its store writes on the way out)."""


class _BundleStore:
    """A member's :class:`~ersm_eval.resume.RecordStore` whose writes the bundle times: ``due`` is the
    bundle's decision for the current batch, taken by the main thread before the batch is handed out."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.now = False

    @property
    def done(self) -> Any:
        return self.store.done

    def due(self) -> bool:
        return self.now

    def flush(self, records: Any, force: bool = False) -> None:
        self.store.flush(records, force=force)

    def merged(self, records: Any) -> Any:
        return self.store.merged(records)


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
            if item is _STOP:
                raise _Stopped()
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

    def close(self, stop: bool = False) -> None:
        """End the batches (``stop``: interrupted, the evaluation keeps what it finished and stops)."""
        self._items.put(_STOP if stop else _END)
        self.join()


def _runner(kind: str, model: Any, label: str, names: list[str], deletion: Any, occlusion: Any,
            batch_size: int, store: Any = None) -> Callable[[DatasetBatches], Any]:
    from ersm_eval.api import evaluate_deletion, evaluate_occlusion, evaluate_sparsity

    if kind == "deletion":
        settings = replace(deletion, label=label)
        return lambda b: evaluate_deletion(model, b, settings=settings, class_names=names, verify=False, store=store)
    if kind == "sparsity":
        return lambda b: evaluate_sparsity(model, b, label=label, class_names=names, verify=False, store=store)
    return lambda b: evaluate_occlusion(model, b, settings=occlusion, label=label, class_names=names,
                                        batch_size=batch_size, verify=False, store=store)


def evaluate_bundle(setups: Sequence[EvalSetup], labels: Sequence[str], deletion: Any, occlusion: Any,
                    skip: Sequence[str] = (), batch_size: int = 32, workers: int = 0,
                    advance: Progress | None = None, stores: dict[str, dict[str, Any]] | None = None,
                    done: set[int] | frozenset[int] = frozenset()) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
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
        stores: {label: {evaluation: RecordStore}} keeping the finished records (resume).
        done: images whose records every store already holds; they are not read again.

    Returns:
        ({label: {evaluation: EvaluationResult}}, {"backbone_passes": ..., "shared_hits": ...}).
    """
    from ersm_eval.resume import flush_seconds

    lead = setups[0]
    names = list(lead.checkpoint.class_names)
    kinds = [k for k in EVALUATIONS if k not in skip]
    timed = {(label, kind): _BundleStore(stores[label][kind]) for label in labels for kind in kinds} if stores else {}
    feeds = [_Feed(label, kind, _runner(kind, s.model, label, names, deletion, occlusion, batch_size,
                                        timed.get((label, kind))), s)
             for s, label in zip(setups, labels) for kind in kinds]
    todo = [i for i in lead.indices if i not in done]
    interval, last_write, seen = (flush_seconds() if timed else 0.0), time.monotonic(), 0
    with shared_backbone([s.model for s in setups]) as shared, shared_pattern_masks() as occluders:
        for feed in feeds:
            feed.start()
        stopped = True
        try:
            for batch in (iterate_batches(lead.dataset, todo, batch_size, workers, lead.device, None) if todo else ()):
                shared.clear()
                occluders.clear()  # the previous batch's occluder masks
                features = fixed_chunks(shared, batch["image"])
                check_finite(features, batch["index"], "backbone features")
                plain = {"features": features, "label": batch["label"], "index": batch["index"]}
                seen += len(batch["index"])
                write = seen >= len(todo) or time.monotonic() - last_write >= interval  # one decision for all
                for store in timed.values():
                    store.now = write
                for feed in feeds:
                    feed.give(plain if feed.kind == "deletion" else batch)
                for feed in feeds:
                    feed.wait()
                if write:
                    last_write = time.monotonic()
                if advance is not None:
                    advance(len(batch["index"]))
            stopped = False
        finally:
            for feed in feeds:
                feed.close(stop=stopped)
            shared.clear()
    for feed in feeds:
        if feed.error is not None:
            raise feed.error
    results: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for feed in feeds:
        results[feed.label][feed.kind] = feed.result
    return results, {"backbone_passes": shared.passes, "shared_hits": shared.hits}
