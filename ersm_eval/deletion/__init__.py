"""Deletion evaluation: accuracy as tokens are deleted in the order of each ranking.

Feature level (the paper's protocol, the default): the P×P positions of the first
k tokens of an order are zeroed on the ungated map X (kept tokens × 1; with
``soft_gate`` on the gated map Y = X ⊙ π instead) and the map is pooled by the mean
over the remaining positions, GAP × N/(N−k) (``rescale=False``: the plain mean).
Everything after the insertion point is pool → head, so the backbone runs once
per image: the kept tokens after k deletions are a suffix of the order, so a
cumulative sum (in float64) of the per-token channel sums over the reversed order
gives the pooled vector of every k and ranking at once, and one batched head call
gives every logit. With a linear head the head's weights go first: the sums run
over each token's logit contributions W·(token sum), K numbers instead of C.
:func:`deletion_logits_general` rebuilds the masked map and re-runs pool → head
for each k instead; the tests hold the two together.

Input level: the image region under each deleted token is filled by
:func:`ersm_eval.fills.fill`, the same fills as the occlusion test (``mean``: the
normalization mean, i.e. zeros in normalized space; ``black``: pixel value 0;
``noise``: standard normal drawn from ``default_rng([fill_seed, dataset_index])``;
``blur``: a Gaussian-blurred copy of the image, σ = half a token's side in
pixels) and the full model, with its own
gate as at inference, re-runs on every (ranking, k) image, batched.

:class:`DeletionEvaluator` follows update → records → compute: ``update`` keeps,
per image, the correctness bit and true-class probability for every curve and k
and the deletion orders (never features); ``records`` returns them as numpy
arrays keyed by name with the image axis first (so records of several processes
can be gathered); ``compute`` sorts them by dataset index and builds the tables
of :mod:`ersm_eval.schema`. Nothing depends on batch size, worker count or
process count, and bootstrap seeds are fixed. (One caveat: CPU convolution
backends may pick batch-size-dependent algorithms, so backbone features, and with
them probabilities, can differ in the last float32 digits between batch sizes.)

Statistics: accuracy intervals are Wilson 95% intervals per (ranking, seed, k).
The normalized AUC is the trapezoidal area under accuracy vs fraction removed
(k/N) divided by the range of the fraction. Each ranking is compared with
``random`` per image, using the random correctness averaged over seeds:

* the headline, ΔAUC: per image, the ranking's normalized area under its
  correctness curve minus random's, averaged over images, with a paired bootstrap
  95% percentile interval and two-sided p-value (the same for the true-class
  probability). The area is linear in the curve, so ΔAUC is also the difference of
  the areas of the mean curves in deletion_curves.csv (random averaged over seeds);
* the largest and the smallest per-k gap, each with its k and paired interval
  (secondary figures, always together);
* a test at every k: exact McNemar with one random seed, else a paired bootstrap
  (statistic = mean difference / bootstrap standard error); the steps whose paired
  interval lies strictly above (below) 0 are counted, so ties never count;
* the verdict of :mod:`ersm_eval.verdicts` from the ΔAUC interval and the chance
  test of the k = 0 accuracy (``not_testable`` for every ranking at chance).

For a model with energies, :mod:`ersm_eval.diagnostics` values are kept per image
too and summarized in energy_diagnostics.csv.

Insertion (``insertion=True``, input level only): each image also starts blurred
(σ = half a token's side) and gets its pixels back under the first k tokens of each
ranking's MoRF order (random: its seeded permutations), on the same k values; the
records gain ``insertion_correct`` and ``insertion_true_prob`` and the tables
insertion_curves.csv and insertion_summary.csv (:mod:`~ersm_eval.deletion.insertion`).
At feature level it is refused: with GAP rescaling it would repeat the LeRF curve.

The package, by concept: :mod:`~ersm_eval.deletion.settings` (what a run is asked),
:mod:`~ersm_eval.deletion.logits` (the arithmetic), :mod:`~ersm_eval.deletion.evaluator`
(update → records → compute), :mod:`~ersm_eval.deletion.tables` (records → tables) and
:mod:`~ersm_eval.deletion.insertion` (records → insertion tables).
"""

from ersm_eval.deletion.evaluator import DeletionEvaluator
from ersm_eval.deletion.insertion import insertion_tables
from ersm_eval.deletion.logits import (
    deletion_logits,
    deletion_logits_general,
    deletion_steps,
    input_deletion_logits,
    kept_pooled,
    suffix_sums,
    token_pixel_map,
)
from ersm_eval.deletion.settings import FILLS, LEVELS, DeletionSettings
from ersm_eval.deletion.tables import deletion_tables, token_score_arrays
from ersm_eval.records import sort_records
from ersm_eval.verdicts import deletion_chance_test, deletion_verdicts

__all__ = [
    "LEVELS",
    "FILLS",
    "DeletionSettings",
    "DeletionEvaluator",
    "deletion_steps",
    "suffix_sums",
    "kept_pooled",
    "deletion_logits",
    "deletion_logits_general",
    "token_pixel_map",
    "input_deletion_logits",
    "deletion_tables",
    "token_score_arrays",
    "insertion_tables",
    "sort_records",
    "deletion_chance_test",
    "deletion_verdicts",
]
