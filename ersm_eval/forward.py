"""Forward passes whose results do not depend on batch size: fixed-size chunks.

Matrix and convolution kernels pick their code path (blocking, vector width,
accumulation order) from the shapes they are given, so the same image run in a
batch of 1, 3 or 8 can come out different in the last float bits. Once the
shape is fixed, an image's result no longer depends on where it sits in the
chunk or on which images keep it company (checked bit for bit on the CPU with
the compact CNN at 32 and 64 px, image at every position, any companions). :func:`fixed_chunks` therefore runs a function on chunks of
exactly ``chunk`` images, padding the last chunk with copies of its last image,
and returns the outputs of the real images only. Evaluations built on it give
bitwise the same numbers for every ``--batch-size``, 1 included, and for every
number of processes.

The price is at most ``chunk − 1`` padded images per call (a batch of one costs
a chunk). :data:`FORWARD_CHUNK` is small enough for that to stay cheap and large
enough for the kernels to stay efficient.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["FORWARD_CHUNK", "fixed_chunks"]

FORWARD_CHUNK = 8  # images per forward pass, whatever the batch size


def _take(value: Any, count: int, chunk: int) -> Any:
    """The first ``count`` rows of a tensor output of one chunk; other values pass unchanged."""
    if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] == chunk:
        return value[:count]
    return value


def _join(parts: list[Any]) -> Any:
    first = parts[0]
    if torch.is_tensor(first) and first.ndim > 0:
        return torch.cat(parts, dim=0)
    return first  # a value that does not depend on the images (e.g. the token grid)


def fixed_chunks(fn: Callable[[torch.Tensor], Any], images: torch.Tensor, chunk: int = FORWARD_CHUNK) -> Any:
    """Run ``fn`` on fixed-size chunks of ``images`` and join the outputs.

    Args:
        fn: images [chunk, ...] → a tensor with the images on axis 0, or a dict whose
            tensor values have the images on axis 0 (other values, such as a grid
            size, are taken from the first chunk).
        images: [B, ...] with B ≥ 1.
        chunk: images per call of ``fn``; the last chunk is padded with copies of
            its last image, whose outputs are dropped.

    Returns:
        What ``fn`` returns, for the B images in order.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    total = images.shape[0]
    if total == 0:
        raise ValueError("fixed_chunks needs at least one image")
    # keep the caller's memory layout (channels-last inputs take faster CPU kernels)
    layout = torch.contiguous_format
    if images.ndim == 4 and not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last):
        layout = torch.channels_last
    outputs: list[Any] = []
    for start in range(0, total, chunk):
        part = images[start : start + chunk]
        count = part.shape[0]
        if count < chunk:
            pad = part[-1:].expand(chunk - count, *part.shape[1:])
            part = torch.cat([part, pad], dim=0)
        out = fn(part.contiguous(memory_format=layout))
        if isinstance(out, dict):
            outputs.append({k: _take(v, count, chunk) for k, v in out.items()})
        else:
            outputs.append(_take(out, count, chunk))
    if isinstance(outputs[0], dict):
        return {k: _join([o[k] for o in outputs]) for k in outputs[0]}
    return _join(outputs)
