"""One backbone pass shared by several checkpoints whose frozen backbones are the same.

Checkpoints trained on top of one frozen backbone (a study's seeds and variants)
compute the same feature map for the same input: only the spatial module and the
head after it differ. :func:`backbone_key` tells when that is so (the tensors of the
backbone, the backbone's name, the image size and the image transform are equal),
and :class:`SharedBackbone` computes the features of an input once and hands the
same tensor to every checkpoint that asks for them.

Inputs are matched by content, not identity: the occlusion evaluator of each
checkpoint builds its own occluded images, which are equal in value but new
tensors. The memo key digests a sample of the values; a hit is confirmed with
:func:`torch.equal` against the whole stored input, so inputs that share a key
can never get each other's features (the second is computed and replaces the first). The memo holds the
inputs and features of one batch of work; the caller clears it between batches.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

__all__ = ["backbone_key", "SharedBackbone", "shared_backbone"]

_SAMPLE = 4096  # values of an input read for its memo key


def backbone_key(model: Any, transform: Any = None) -> str:
    """A digest of what determines a model's feature map: backbone tensors, name, image size, transform.

    Args:
        model: an ERSM model (its ``backbone`` module is hashed, names and values).
        transform: the image transform as a plain value (e.g. ``asdict(dataset.transform)``).

    Returns:
        A hex digest; equal digests mean equal features for equal images.
    """
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    digest.update(repr((getattr(config, "backbone", None), getattr(config, "image_size", None),
                        sorted((transform or {}).items()) if isinstance(transform, dict) else repr(transform)))
                  .encode())
    for name, tensor in model.backbone.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


class SharedBackbone:
    """A memo of one backbone: ``shared(x)`` returns the features of ``x``, computed once per content.

    Args:
        compute: the backbone pass, images → features (e.g. the first model's bound
            ``forward_features``).

    Attributes:
        passes: inputs computed.
        hits: inputs answered from the memo.
    """

    def __init__(self, compute: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._memo: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.passes = 0
        self.hits = 0

    @staticmethod
    def _key(x: torch.Tensor) -> tuple:
        """Shape, dtype, device and a digest of up to 4096 evenly spaced values: cheap to compute; a
        hit is confirmed against the whole stored input, so two inputs sharing a key only cost a pass."""
        flat = x.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLE)].contiguous().cpu()
        raw = sample.view(torch.uint8).numpy().tobytes() if sample.numel() else b""
        return tuple(x.shape), str(x.dtype), str(x.device), hashlib.blake2b(raw, digest_size=16).digest()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The features of ``x``: from the memo when an equal input was computed since :meth:`clear`."""
        key = self._key(x)
        with self._lock:  # concurrent askers of one input wait for the one pass
            found = self._memo.get(key)
            if found is not None and torch.equal(found[0], x):
                self.hits += 1
                return found[1]
            features = self._compute(x)
            self._memo[key] = (x, features)
            self.passes += 1
            return features

    def clear(self) -> None:
        """Forget every stored input and its features (between batches)."""
        with self._lock:
            self._memo.clear()


@contextmanager
def shared_backbone(models: Sequence[Any]) -> Iterator[SharedBackbone]:
    """Give every model of ``models`` (equal :func:`backbone_key`) one :class:`SharedBackbone`.

    Each model's ``forward_features`` is replaced, for the duration of the block, by the
    shared memo computing with the first model's own; the models' forward passes,
    maps and tails are otherwise their own. Restored on exit.
    """
    shared = SharedBackbone(models[0].forward_features)
    for model in models:
        model.__dict__["forward_features"] = shared
    try:
        yield shared
    finally:
        for model in models:
            model.__dict__.pop("forward_features", None)
