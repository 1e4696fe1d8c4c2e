"""The one rule for picking images: seeded, class-stratified subsets and splits.

Every command that takes ``--limit N`` (train, deletion, occlusion, sparsity,
compare) picks its images with :func:`stratified_subset`, so the same ``N`` and
``--subset-seed`` give the same images everywhere. Real datasets are stored class
by class; taking the first N images would evaluate a few classes only.

The rule, for labels ``y`` and a request of ``n`` images:

1. Classes take equal shares as far as their sizes allow ("water filling"): every
   class gets ``min(size, t)`` images for the largest level ``t`` that fits in
   ``n``; the images left over (fewer than the number of classes still open) go
   one each to open classes chosen by a seeded permutation.
2. Within a class, the images taken are the first of a seeded permutation of that
   class's indices (seeded by the seed and the class index, so a class's choice
   does not depend on the other classes).
3. The result is returned sorted.

:func:`stratified_split` carves a validation share from a training set with the
same per-class permutations (proportional shares, largest remainders first).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ersm_core.errors import ConfigError

__all__ = ["dataset_labels", "stratified_subset", "stratified_split", "indices_sha256", "subset_record"]

# seed streams, so a --limit subset and a validation split drawn with the same seed are independent
_LIMIT_STREAM = 0
_SPLIT_STREAM = 1


def dataset_labels(dataset: Any) -> np.ndarray:
    """Class index of every item of ``dataset``, without decoding images where the dataset allows.

    Uses, in order: a ``label_of(i)`` method, a ``labels`` list, a ``samples`` list of
    ``(path, label, ...)`` tuples, and finally ``load(i).label`` (reads every image).
    """
    n = len(dataset)
    if callable(getattr(dataset, "label_of", None)):
        return np.array([int(dataset.label_of(i)) for i in range(n)], dtype=np.int64)
    labels = getattr(dataset, "labels", None)
    if labels is not None and len(labels) == n:
        return np.asarray(labels, dtype=np.int64)
    samples = getattr(dataset, "samples", None)
    if samples is not None and len(samples) == n:
        return np.array([int(s[1]) for s in samples], dtype=np.int64)
    return np.array([int(dataset.load(i).label) for i in range(n)], dtype=np.int64)


def _class_orders(labels: np.ndarray, seed: int, stream: int) -> dict[int, np.ndarray]:
    """For each class, its indices in a seeded order (seed, stream, class)."""
    orders = {}
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        orders[int(cls)] = np.random.default_rng([int(seed), stream, int(cls)]).permutation(members)
    return orders


def _equal_quotas(sizes: dict[int, int], n: int, seed: int) -> dict[int, int]:
    """Per-class counts summing to ``n``, as equal as the class sizes allow (see the module docstring)."""
    quotas = {c: 0 for c in sizes}
    remaining = n
    open_classes = sorted(c for c in sizes if sizes[c] > 0)
    while remaining and open_classes:
        share = remaining // len(open_classes)
        if share == 0:
            # fewer images left than open classes: one each to a seeded choice of them
            chosen = np.random.default_rng([int(seed), _LIMIT_STREAM, 1 << 20]).permutation(open_classes)[:remaining]
            for c in chosen:
                quotas[int(c)] += 1
            break
        for c in open_classes:
            take = min(share, sizes[c] - quotas[c])
            quotas[c] += take
            remaining -= take
        open_classes = [c for c in open_classes if quotas[c] < sizes[c]]
    return quotas


def stratified_subset(labels: Sequence[int] | np.ndarray, n: int | None, seed: int = 0) -> list[int]:
    """Sorted indices of a seeded, class-stratified subset of ``n`` items (all items when ``n`` is None or too big).

    Args:
        labels: class index of every item.
        n: how many items to keep (``--limit``).
        seed: ``--subset-seed``.

    Raises:
        ConfigError: ``n`` below 1.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if n is None or n >= len(labels):
        return list(range(len(labels)))
    if n < 1:
        raise ConfigError(f"--limit must be at least 1 (got {n}): there would be no images to use")
    orders = _class_orders(labels, seed, _LIMIT_STREAM)
    quotas = _equal_quotas({c: len(o) for c, o in orders.items()}, int(n), seed)
    picked = [int(i) for c, order in orders.items() for i in order[: quotas[c]]]
    return sorted(picked)


def stratified_split(labels: Sequence[int] | np.ndarray, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split positions ``0..len(labels)-1`` into (train, validation), both sorted.

    The validation part holds ``round(fraction · n)`` items (at least one when
    ``fraction > 0`` and there are two items or more), shared among classes in
    proportion to their sizes (largest remainders first, ties broken by a seeded
    order of classes); each class's items come from its seeded order.

    Raises:
        ConfigError: ``fraction`` outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    n_val = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, max(n - 1, 0))
    if n_val == 0:
        return list(range(n)), []
    orders = _class_orders(labels, seed, _SPLIT_STREAM)
    classes = sorted(orders)
    exact = {c: n_val * len(orders[c]) / n for c in classes}
    quotas = {c: int(np.floor(exact[c])) for c in classes}
    tiebreak = {int(c): r for r, c in enumerate(np.random.default_rng([int(seed), _SPLIT_STREAM, 1 << 20]).permutation(classes))}
    by_remainder = sorted(classes, key=lambda c: (-(exact[c] - quotas[c]), tiebreak[c]))
    for c in by_remainder[: n_val - sum(quotas.values())]:
        quotas[c] += 1
    val = sorted(int(i) for c in classes for i in orders[c][: quotas[c]])
    chosen = set(val)
    return [i for i in range(n) if i not in chosen], val


def indices_sha256(indices: Sequence[int]) -> str:
    """Hex sha256 of the indices written as comma-separated decimals (``"0,5,9"``), to compare subsets."""
    return hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()


def subset_record(indices: Sequence[int], limit: int | None, seed: int, total: int, max_listed: int = 10_000) -> dict[str, Any]:
    """What provenance says about a selection: limit, seed, count, hash, and the indices of a subset (up to ``max_listed``)."""
    indices = [int(i) for i in indices]
    subset = len(indices) < total
    return {
        "limit": limit,
        "subset_seed": int(seed),
        "rule": "seeded class-stratified subset (equal per class), sorted" if subset else "all images",
        "n_images": len(indices),
        "of": int(total),
        "indices_sha256": indices_sha256(indices),
        "indices": indices if subset and len(indices) <= max_listed else None,
    }
