"""The functional API: deletion, occlusion and sparsity of any classifier over a DataLoader.

Each ``evaluate_*`` function takes a model (an ERSM model, a timm CNN, or anything :func:`~ersm_eval.adapter.wrap`
accepts; pass ``wrap(model, layer=...)`` for other models) and an iterable of
batches, drives the evaluator's ``update() / records() / compute()`` through the one
loop :func:`~ersm_eval.api.driver.run_evaluator` and returns
an :class:`~ersm_eval.results.EvaluationResult` (``.tables``, ``.summary``,
``.save(folder)``).

Batches may be ``(x, y)``, ``(x, y, extra)`` or dicts:

- ``x``: normalized images [B, 3, H, W]; ``y``: class indices [B];
- ``extra``: a dict merged into the batch (``mask``, ``box``, ``has_mask``, ``index``),
  or a tensor [B, H, W] taken as the object masks;
- dicts: keys ``image`` and ``label``, and optionally ``index`` (dataset index),
  ``mask`` [B, H, W] (object masks), ``has_mask`` [B] and ``box`` [B, 4] (x0, y0, x1, y1;
  −1 where unknown), as the project's datasets yield them.

Without an ``index`` an image's index is its position in the loader (0, 1, 2, ...
over all batches); seeded parts (random rankings, occluders, noise fills) depend
only on it, so the results do not depend on batch size. The loader must not
shuffle.

External rankings (:func:`evaluate_deletion` ``scores=``): ``{name: maps}`` where
``maps`` is a tensor or array [n_images, h, w] on the token grid, or [n_images, H, W]
in pixels (each token gets the mean of the pixels under it, the same pixels that
input-level deletion fills), indexed by position in the loader; or a callable
``(model, x, y) -> maps`` for each batch, given the model you passed. The token
with the **highest** score is deleted first, as saliency maps rank.
"""

from ersm_eval.api.batches import DatasetBatches, iterate_loader, iterate_source
from ersm_eval.api.deletion import evaluate_deletion
from ersm_eval.api.driver import Progress, gather, run_evaluator
from ersm_eval.api.external import ScoreMaps, external_rankings, tokens_from_maps
from ersm_eval.api.occlusion import combine_occlusion, evaluate_occlusion
from ersm_eval.api.sparsity import evaluate_sparsity, mask_statistics

__all__ = [
    "ScoreMaps",
    "Progress",
    "DatasetBatches",
    "run_evaluator",
    "gather",
    "combine_occlusion",
    "evaluate_deletion",
    "evaluate_occlusion",
    "evaluate_sparsity",
    "mask_statistics",
    "external_rankings",
    "tokens_from_maps",
    "iterate_loader",
    "iterate_source",
]
