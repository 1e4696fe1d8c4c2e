"""Sparsity, coherence and localization of the keep, energy and CAM maps.

:class:`SparsityEvaluator` follows "accumulate, then compute": ``update(batch)``
stores small per-image records (token maps [h, w], prediction, and the
localization numbers of each map against the object mask), ``records()`` returns
them as numpy arrays with the image axis first (what
:func:`ersm_eval.distributed.gather_records` gathers), and ``compute(records)``
sorts by dataset index and returns the tables of :mod:`ersm_eval.schema`.
Nothing depends on batch size, worker count or process count; bootstrap seeds
are fixed.

Definitions (documented choices):

- *keep rate* of an image: its mean keep probability π over the N tokens;
  ``frac_below_half`` is the share of its tokens with π < 0.5.
- *keep entropy*: entropy of p_i = π_i / Σπ, divided by log N (1 = uniform keep,
  0 = one token keeps everything).
- *coherence* of the hard mask π ≥ 0.5 on the token grid: the number of
  8-connected components of kept tokens, the largest component's share of the
  kept tokens (NaN when nothing is kept), and neighbour agreement, the share of
  8-neighbour token pairs (each unordered pair once) with the same hard value.
- *localization* (datasets with object masks or boxes; a box acts as a mask):
  see :mod:`ersm_eval.localization` and :mod:`ersm_eval.maps`. ``iou`` thresholds
  the upsampled map at 0.25 / 0.5 / 0.75 of its max; ``iou_absolute`` thresholds
  the upsampled keep map at π = 0.5 (the hard mask); ``pointing_game`` is 1 when
  the map's maximum falls inside the object (tied maxima: the share of them on
  the object). Every score is also computed for the ``uniform`` and ``center``
  baseline maps on the same images; localization.csv holds them all with each
  real map's excess over the better baseline and its verdict. The localization
  rows of sparsity_summary.csv are copied from that table (one computation),
  except ``iou_absolute``, which has no baseline. When the object covers ≥ 80%
  of the image in more than half of the images, a note says the localization
  figures are uninformative.
- *failure category* of a wrong prediction: ``high_confidence`` when its
  confidence is ≥ 0.9; otherwise ``focused`` when the model's primary map (keep
  where the model has a gate, else CAM) puts at least half its mass on the
  object, ``distracted`` when less. Without object masks the rule falls back on
  sparsity: ``focused`` when the image's keep rate is at most the median keep
  rate of all images (high sparsity), else ``distracted``; with neither masks
  nor a keep map, wrong low-confidence predictions stay uncategorised ('').
- intervals: 95% Wilson intervals for proportions (accuracy, box accuracy,
  pointing game), percentile bootstrap over images (1000 resamples, fixed seed)
  for means; keep rate of correct vs wrong predictions resamples images and
  recomputes both group means.

The package, by concept: :mod:`~ersm_eval.sparsity.settings`,
:mod:`~ersm_eval.sparsity.statistics` (one map), :mod:`~ersm_eval.sparsity.evaluator`
(update → records → compute), :mod:`~ersm_eval.sparsity.tables` (records → tables) and
:mod:`~ersm_eval.sparsity.gallery` (the report's images).
"""

from ersm_eval.sparsity.evaluator import SparsityEvaluator
from ersm_eval.sparsity.gallery import gallery_arrays, gallery_source, select_gallery
from ersm_eval.sparsity.settings import NO_MASKS_NOTE, NOT_ASKED_NOTE, SparsitySettings
from ersm_eval.sparsity.statistics import (
    ABSOLUTE_KEEP,
    FOCUS_MASS,
    HIGH_CONFIDENCE,
    HIST_BINS,
    failure_categories,
    hard_mask_components,
    keep_entropy,
    neighbour_agreement,
)
from ersm_eval.sparsity.tables import SparsityResult, sparsity_tables

__all__ = [
    "FOCUS_MASS",
    "NO_MASKS_NOTE",
    "NOT_ASKED_NOTE",
    "HIGH_CONFIDENCE",
    "HIST_BINS",
    "ABSOLUTE_KEEP",
    "SparsitySettings",
    "SparsityEvaluator",
    "SparsityResult",
    "sparsity_tables",
    "hard_mask_components",
    "neighbour_agreement",
    "keep_entropy",
    "failure_categories",
    "select_gallery",
    "gallery_arrays",
    "gallery_source",
]
