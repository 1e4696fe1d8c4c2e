"""Deletion evaluation (SPEC §2): accuracy as tokens are deleted in the order of each ranking.

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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ersm_core.errors import ConfigError, DatasetError
from ersm_eval.agreement import ranking_agreement
from ersm_eval.cam import cam_scores, token_values
from ersm_eval.context import check_finite, check_labels
from ersm_eval.diagnostics import DIAGNOSTIC_METRICS, energy_diagnostic_values, energy_diagnostics
from ersm_eval.fills import FILL_KINDS, fill, token_blur_sigma
from ersm_eval.forward import FORWARD_CHUNK
from ersm_eval.rankings import DEFAULT_RANKINGS, RankingInputs, resolve_rankings
from ersm_eval.schema import TABLES
from ersm_eval.stats import bootstrap_weights, mcnemar_exact, normalized_auc, paired_bootstrap_test, wilson_interval
from ersm_eval.verdicts import ChanceTest, chance_test, deletion_verdict, step_counts
from ersm_eval import verdicts as _verdicts

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
    "token_score_arrays",
    "sort_records",
    "deletion_chance_test",
    "deletion_verdicts",
]

LEVELS = ("feature", "input")
FILLS = FILL_KINDS  # the fills of ersm_eval.fills
_POOL_BUDGET = 1 << 23  # float64 elements of [images, curves, N, C] held at once by the fast path


@dataclass(frozen=True)
class DeletionSettings:
    """How a deletion evaluation runs; ``asdict`` goes into summary.json."""

    rankings: tuple[str, ...] = DEFAULT_RANKINGS  # ranking names, in table order
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # seeds of the random ranking, one curve each
    steps: int | None = None  # None: every k = 0..N−1; an int: that many evenly spaced k, 0 and N−1 included
    soft_gate: bool = False  # delete on the gated map Y (survivors keep π) instead of the ungated map X
    rescale: bool = True  # pool by the mean over the remaining positions (GAP·N/(N−k)); False: plain mean
    level: str = "feature"  # 'feature' (the paper's protocol) or 'input' (fill image regions, re-run the model)
    fill: str = "mean"  # input level: 'mean', 'black', 'noise' or 'blur'
    fill_seed: int = 0  # input level: seed of the noise fill (with the dataset index)
    save_token_scores: bool = False  # keep every score of every image and token in the records
    label: str = ""  # value of the tables' checkpoint column
    n_boot: int = 1000  # bootstrap resamples for intervals and paired tests
    boot_seed: int = 0  # seed of the bootstrap resamples (fixed: the same run writes the same CSVs)
    head_rows: int = 16384  # pooled vectors per head call (bounds memory)
    input_chunk: int = 64  # images per model call at the input level

    def __post_init__(self) -> None:
        object.__setattr__(self, "rankings", tuple(self.rankings))
        for name in ("steps", "n_boot", "boot_seed", "fill_seed", "head_rows", "input_chunk"):
            value = getattr(self, name, 0)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ConfigError(f"{name} must be a whole number{' or None (every k)' if name == 'steps' else ''}, "
                                  f"got {value!r}")
        if isinstance(self.seeds, (str, bytes)) or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                                          for s in self.seeds):
            raise ConfigError(f"seeds must be a sequence of whole numbers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.level not in LEVELS:
            raise ConfigError(f"unknown deletion level {self.level!r}; use one of: {', '.join(LEVELS)}")
        if self.fill not in FILLS:
            raise ConfigError(f"unknown fill {self.fill!r}; use one of: {', '.join(FILLS)}")
        if self.level == "input" and (self.soft_gate or not self.rescale):
            raise ConfigError(
                "--soft-gate and --no-rescale apply to --level feature only; at --level input the model "
                "runs as at inference, with its own gate and pooling"
            )
        if self.steps is not None and self.steps < 2:
            raise ConfigError(f"--steps takes 'all' or a count of at least 2 (k = 0 and k = N−1), got {self.steps}")
        if "random" in self.rankings and not self.seeds:
            raise ConfigError("the random ranking needs at least one seed (--seeds 0,1,2,3,4)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds has duplicates: {list(self.seeds)}")
        if self.n_boot < 10:
            raise ConfigError(f"n_boot must be at least 10, got {self.n_boot}")
        if self.head_rows < 1 or self.input_chunk < 1:
            raise ConfigError("head_rows and input_chunk must be positive")


# -- the math --------------------------------------------------------------------------


def deletion_steps(n_tokens: int, steps: int | None = None) -> np.ndarray:
    """The k values of a curve: all of 0..N−1, or ``steps`` evenly spaced ones with 0 and N−1."""
    if n_tokens < 2:
        raise ConfigError(f"deletion needs at least 2 tokens; this model's map has {n_tokens} (lower --patch-size)")
    if steps is None or steps >= n_tokens:
        return np.arange(n_tokens, dtype=np.int64)
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2, got {steps}")
    return np.unique(np.round(np.linspace(0, n_tokens - 1, steps)).astype(np.int64))


def _kept_sums_descending(values: torch.Tensor, orders: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """:func:`suffix_sums` with the k axis in descending order (no flip of the big tensor)."""
    n_tokens = values.shape[1]
    rows = torch.arange(values.shape[0], device=values.device)[:, None, None]
    reverse = values[rows, orders.flip(2)]  # [B, R, N, D]: tokens from the last deleted to the first
    reverse.cumsum_(2)  # reverse[:, :, j] = sum of order[N−1−j:], the kept set after N−1−j deletions
    positions = n_tokens - 1 - steps.flip(0)  # ascending j for descending k
    if len(positions) == n_tokens and bool((positions == torch.arange(n_tokens, device=steps.device)).all()):
        return reverse
    # advanced indexing: index_select along an inner dim is far slower on the CPU
    return reverse[:, :, positions]


def suffix_sums(values: torch.Tensor, orders: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Sum of the per-token ``values`` over the tokens kept after deleting the first k of each order.

    The kept tokens are order[k:], a suffix of the order: a cumulative sum over the
    reversed order gives them for every k at once, with no subtraction (so no
    cancellation when few tokens remain).

    Args:
        values: per-token vectors [B, N, D] (float64 for exactness).
        orders: deletion orders [B, R, N].
        steps: the k values [S], ascending (long, same device).

    Returns:
        [B, R, S, D].
    """
    return _kept_sums_descending(values, orders, steps).flip(2)


def _denominator(n_tokens: int, steps: torch.Tensor, rescale: bool, positions: int, dtype: torch.dtype) -> torch.Tensor:
    """Positions pooled over at each k: (N−k)·P² with rescaling, else N·P²; [S]."""
    if rescale:
        return (n_tokens - steps).to(dtype) * positions
    return torch.full(steps.shape, float(n_tokens * positions), dtype=dtype, device=steps.device)


def kept_pooled(sums: torch.Tensor, orders: torch.Tensor, steps: torch.Tensor, rescale: bool, positions: int) -> torch.Tensor:
    """Pooled vectors after deleting the first k tokens of each order, for every k in ``steps``.

    Args:
        sums: token sums [B, N, C] (see :func:`ersm_eval.cam.token_sums`).
        orders: [B, R, N] deletion orders.
        steps: [S] k values (long, on the same device).
        rescale: divide by the remaining positions (N−k)·P² instead of all N·P².
        positions: P², positions per token.

    Returns:
        [B, R, S, C] in the dtype of ``sums``.
    """
    denom = _denominator(sums.shape[1], steps, rescale, positions, sums.dtype)
    return suffix_sums(sums, orders, steps) / denom[:, None]


def _head(model: Any, pooled: torch.Tensor, rows: int) -> torch.Tensor:
    """Logits of pooled vectors [M, C] in chunks of ``rows``."""
    parts = [model.forward_head(pooled[i : i + rows]) for i in range(0, pooled.shape[0], rows)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


@torch.no_grad()
def deletion_logits(
    model: Any,
    feature_map: torch.Tensor,
    orders: torch.Tensor,
    steps: np.ndarray | torch.Tensor,
    rescale: bool = True,
    head_rows: int = 16384,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fast path: logits [B, R, S, K] after deleting the first k tokens of each order, every k in ``steps``.

    ``feature_map`` is the map deletion acts on (X, or Y = gate(X) for soft gating).
    With a linear head (logits = W·pooled + b) the head's weights are applied to the N
    token sums first and the suffix sums run over logit contributions (K numbers per
    token instead of C): the same affine map, in another order, and far cheaper for
    wide maps. Otherwise the pooled vectors of every (ranking, k) go through the head
    in batched calls of ``head_rows``. ``values`` passes :func:`token_values` when the
    caller has them already.
    """
    return _deletion_logits_descending(model, feature_map, orders, steps, rescale, head_rows, values).flip(2)


def _deletion_logits_descending(model, feature_map, orders, steps, rescale=True, head_rows=16384, values=None):
    """:func:`deletion_logits` with the k axis in descending order (the evaluator flips its small results)."""
    batch, n_curves, n_tokens = orders.shape
    channels = feature_map.shape[1]
    patch = model.config.patch_size
    steps_t = torch.as_tensor(np.asarray(steps), dtype=torch.long, device=feature_map.device)
    n_steps = len(steps_t)
    linear = model.head_is_linear
    if values is None:
        values = token_values(model, feature_map)
    per_image = max(1, _POOL_BUDGET // max(1, n_curves * n_tokens * values.shape[2]))
    dtype = feature_map.dtype
    # 1 / pooled positions per k (descending), applied after the exact wide sums are rounded
    scale = (1.0 / _denominator(n_tokens, steps_t.flip(0), rescale, patch * patch, values.dtype)).to(dtype)[:, None]
    bias = model.head.bias.to(dtype) if linear and model.head.bias is not None else None
    out = []
    for start in range(0, batch, per_image):
        sl = slice(start, start + per_image)
        kept = _kept_sums_descending(values[sl], orders[sl], steps_t).to(dtype)  # [b, R, S, D]
        # in place and in the model's dtype (mixed-dtype kernels are several times slower on the CPU)
        if bias is not None:
            torch.addcmul(bias, kept, scale, out=kept)  # logits of a linear head
        else:
            kept.mul_(scale)
        b = kept.shape[0]
        logits = kept if linear else _head(model, kept.reshape(-1, channels), head_rows)
        out.append(logits.reshape(b, n_curves, n_steps, -1))
    return torch.cat(out) if len(out) > 1 else out[0]


@torch.no_grad()
def deletion_logits_general(
    model: Any,
    feature_map: torch.Tensor,
    orders: torch.Tensor,
    steps: np.ndarray | torch.Tensor,
    rescale: bool = True,
) -> torch.Tensor:
    """General path: for every ranking and k, zero the deleted tokens' positions, pool
    (GAP·N/(N−k) with ``rescale``) and run the head; logits [B, R, S, K]."""
    from ersm_core.energy import untokenize_scale

    batch, n_curves, n_tokens = orders.shape
    patch = model.config.patch_size
    out = []
    for r in range(n_curves):
        per_k = []
        for k in np.asarray(steps).tolist():
            keep = torch.ones(batch, n_tokens, dtype=feature_map.dtype, device=feature_map.device)
            keep.scatter_(1, orders[:, r, :k], 0.0)
            pooled = model.pool(untokenize_scale(feature_map, keep, patch))
            if rescale:
                pooled = pooled * (n_tokens / (n_tokens - k))
            per_k.append(model.forward_head(pooled))
        out.append(torch.stack(per_k, 1))
    return torch.stack(out, 1)


def token_pixel_map(image_hw: tuple[int, int], grid: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Token index of every image pixel, [H_img, W_img] long: pixel (y, x) lies under token
    (⌊y·h/H_img⌋, ⌊x·w/W_img⌋) of the h×w grid."""
    img_h, img_w = image_hw
    grid_h, grid_w = grid
    rows = torch.arange(img_h, device=device) * grid_h // img_h
    cols = torch.arange(img_w, device=device) * grid_w // img_w
    return rows[:, None] * grid_w + cols[None, :]


@torch.no_grad()
def input_deletion_logits(
    model: Any,
    images: torch.Tensor,
    fills: torch.Tensor,
    orders: torch.Tensor,
    steps: np.ndarray | torch.Tensor,
    chunk: int = 64,
) -> torch.Tensor:
    """Input level: logits [B, R, S, K] of the full model on images whose regions under the
    first k tokens of each order are replaced by ``fills``; (image, ranking, k) jobs are
    batched ``chunk`` at a time."""
    batch, n_curves, n_tokens = orders.shape
    device = images.device
    steps_t = torch.as_tensor(np.asarray(steps), dtype=torch.long, device=device)
    n_steps = len(steps_t)
    ranks = torch.empty_like(orders)
    ranks.scatter_(2, orders, torch.arange(n_tokens, device=orders.device).expand_as(orders).contiguous())
    pix = token_pixel_map(tuple(images.shape[2:]), model.grid, device)  # [Hi, Wi]
    pix_rank = ranks[:, :, pix]  # [B, R, Hi, Wi]: deletion position of the token under each pixel
    jobs = torch.arange(batch * n_curves * n_steps, device=device)
    out = []
    for start in range(0, len(jobs), chunk):
        job = jobs[start : start + chunk]
        b, r, s = job // (n_curves * n_steps), (job // n_steps) % n_curves, job % n_steps
        deleted = pix_rank[b, r] < steps_t[s][:, None, None]
        x = torch.where(deleted[:, None], fills[b], images[b])
        out.append(model(x))
    return torch.cat(out).reshape(batch, n_curves, n_steps, -1)


_PER_IMAGE = ("image", "features", "label", "index", "scores")  # the batch keys update reads


def _padded_chunk(batch: dict[str, Any], start: int, count: int, size: int) -> dict[str, Any]:
    """Rows ``start:start+count`` of the per-image values of ``batch`` that update reads
    (the ``scores`` dict's tensors included), padded to ``size`` rows with copies of the last."""
    def rows(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rows(v) for k, v in value.items()}
        part = torch.as_tensor(value)[start : start + count]
        if count < size:
            part = torch.cat([part, part[-1:].expand(size - count, *part.shape[1:])], dim=0)
        return part.contiguous()
    return {k: rows(v) for k, v in batch.items() if k in _PER_IMAGE}


# -- the evaluator ---------------------------------------------------------------------


class DeletionEvaluator:
    """Deletion curves of every ranking for one model (see the module docstring).

    Args:
        model: an :class:`~ersm_core.model.ERSMModel` (put in eval mode during updates).
        settings: rankings, seeds, steps, gate mode, level, ...

    Attributes:
        curves: (ranking, seed) of every curve, seed −1 for deterministic rankings.
        steps: the k values, [S].
        skipped: ranking name → why it does not apply to this model.
    """

    def __init__(self, model: Any, settings: DeletionSettings | None = None) -> None:
        self.model = model
        self.settings = settings or DeletionSettings()
        resolved = resolve_rankings(self.settings.rankings, model)
        self.rankings = resolved.rankings
        self.skipped = resolved.skipped
        self.n_tokens = int(model.n_tokens)
        self.steps = deletion_steps(self.n_tokens, self.settings.steps)
        self._specs = [(r, s) for r in self.rankings for s in (self.settings.seeds if r.seeded else (-1,))]
        self.curves: list[tuple[str, int]] = [(r.name, s) for r, s in self._specs]
        self._need_cam = any("cam" in r.needs for r in self.rankings) or self.settings.save_token_scores
        self.diagnose = bool(getattr(model, "has_energy", False))  # energy diagnostics need E^u and E^p
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._parts: list[dict[str, np.ndarray]] = []

    @property
    def n_images(self) -> int:
        return sum(len(p["index"]) for p in self._parts)

    # -- accumulate ---------------------------------------------------------------------
    @torch.no_grad()
    def update(self, batch: dict[str, Any]) -> None:
        """Evaluate one batch (``image`` or precomputed ``features``, ``label``, ``index``).

        The batch is evaluated in chunks of exactly :data:`~ersm_eval.forward.FORWARD_CHUNK`
        images (the last padded with copies of its last image, whose results are
        dropped), so every number is bitwise the same whatever the batch size.
        """
        model = self.model
        was_training = model.training
        model.eval()
        try:
            total = len(torch.as_tensor(batch["label"]))
            for start in range(0, total, FORWARD_CHUNK):
                count = min(FORWARD_CHUNK, total - start)
                self._update_chunk(_padded_chunk(batch, start, count, FORWARD_CHUNK), count)
        finally:
            model.train(was_training)

    def _update_chunk(self, batch: dict[str, Any], count: int) -> None:
        """Evaluate one fixed-size chunk whose first ``count`` images are real."""
        model = self.model
        st = self.settings
        device = next(model.parameters()).device
        labels = torch.as_tensor(batch["label"]).to(device).long()
        indices = np.asarray(torch.as_tensor(batch["index"]).cpu(), dtype=np.int64)
        images = batch.get("image")
        if images is not None:
            images = images.to(device)
        if "features" in batch and st.level == "feature":
            features = batch["features"].to(device)
        elif images is not None:
            features = model.forward_features(images)
        else:
            raise ConfigError("input-level deletion needs images; feature batches (--cache) only serve --level feature")
        check_finite(features, indices, "backbone features", count)
        scores = {k: v for k, v in model.token_scores(features).items() if k != "grid"}
        # external per-token scores [B, N] (ersm_eval.api's scores=), read by rankings registered for them
        scores.update({k: torch.as_tensor(v).to(device) for k, v in batch.get("scores", {}).items()})
        soft = st.soft_gate or st.level == "input"
        deletion_map = model.gate(features) if soft else features
        values = token_values(model, deletion_map) if st.level == "feature" or self._need_cam else None
        cam = cam_scores(model, deletion_map, values=values)[0] if self._need_cam else None
        inputs = RankingInputs(scores=scores, indices=indices, n_tokens=self.n_tokens, cam=cam,
                               grid=tuple(model.grid))
        orders = torch.stack([r.order(inputs, s).to(device) for r, s in self._specs], 1)  # [B, R, N]
        if st.level == "feature":
            logits = _deletion_logits_descending(model, deletion_map, orders, self.steps, st.rescale,
                                                 st.head_rows, values)
            descending = True
        else:
            sigma = token_blur_sigma(tuple(images.shape[2:]), tuple(model.grid))
            fills = fill(images, st.fill, tuple(model.mean), tuple(model.std), indices, st.fill_seed, sigma)
            logits = input_deletion_logits(model, images, fills, orders, self.steps, st.input_chunk)
            descending = False
        # the model's own logits (k = 0 among them): one pass over the chunk's logits, real images only
        check_finite(logits, indices, "logits", count)
        check_labels(labels, logits.shape[-1], indices, count)
        diag = energy_diagnostic_values(scores, tuple(model.grid)) if self.diagnose else {}
        real = slice(0, count)
        self._store(logits[real], labels[real], indices[real], orders[real],
                    {k: v[real] for k, v in scores.items()}, None if cam is None else cam[real], descending)
        self._parts[-1].update({f"diag_{k}": v[real].astype(np.float64) for k, v in diag.items()})

    def _store(self, logits, labels, indices, orders, scores, cam, descending=False) -> None:
        batch, n_curves, n_steps, width = logits.shape
        self._logit_width = int(width)
        correct = (logits.argmax(-1) == labels[:, None, None]).cpu().numpy()
        log_prob = torch.log_softmax(logits.float(), -1)
        true = log_prob.gather(-1, labels[:, None, None, None].expand(batch, n_curves, n_steps, 1)).squeeze(-1)
        true = true.exp().cpu().numpy().astype(np.float32)
        if descending:  # k axis back to ascending order
            correct, true = correct[:, :, ::-1], true[:, :, ::-1]
        order_dtype = np.int16 if self.n_tokens <= np.iinfo(np.int16).max else np.int32
        part = {
            "index": indices,
            "label": labels.cpu().numpy().astype(np.int64),
            "correct": np.ascontiguousarray(correct),
            "true_prob": np.ascontiguousarray(true),
            "orders": orders.cpu().numpy().astype(order_dtype),
        }
        if self.settings.save_token_scores:
            for key, value in scores.items():
                part[f"score_{key}"] = value.float().cpu().numpy()
            if cam is not None:
                part["score_cam"] = cam.cpu().numpy()
        self._parts.append(part)

    def records(self) -> dict[str, np.ndarray]:
        """Per-image records, image axis first, in update order (``compute`` sorts them)."""
        if not self._parts:
            n_curves, n_steps = len(self.curves), len(self.steps)
            empty = {
                "index": np.zeros(0, np.int64),
                "label": np.zeros(0, np.int64),
                "correct": np.zeros((0, n_curves, n_steps), bool),
                "true_prob": np.zeros((0, n_curves, n_steps), np.float32),
                "orders": np.zeros((0, n_curves, self.n_tokens), np.int16),
            }
            if self.diagnose:
                empty.update({f"diag_{k}": np.zeros(0, np.float64) for k in DIAGNOSTIC_METRICS})
            return empty
        return {k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}

    # -- compute ------------------------------------------------------------------------
    def compute(self, records: dict[str, np.ndarray] | None = None) -> dict[str, pd.DataFrame]:
        """The four tables, keyed by file name (deletion_curves.csv, deletion_summary.csv,
        deletion_tests.csv, ranking_agreement.csv)."""
        rec = sort_records(self.records() if records is None else records)
        n = len(rec["index"])
        if n == 0:
            raise DatasetError("no images were evaluated, so there are no deletion curves to compute")
        st = self.settings
        label = st.label
        steps = self.steps
        fraction = steps / self.n_tokens
        correct = rec["correct"]
        true_prob = rec["true_prob"].astype(np.float64)

        # curves: one per (ranking, seed)
        frames = []
        for c, (name, seed) in enumerate(self.curves):
            hits = correct[:, c, :].sum(0)
            low, high = wilson_interval(hits, n)
            frames.append(pd.DataFrame({
                "checkpoint": label, "ranking": name, "seed": seed, "k": steps,
                "fraction_removed": fraction, "n_images": n, "accuracy": hits / n,
                "ci_low": low, "ci_high": high, "mean_true_prob": true_prob[:, c, :].mean(0),
            }))
        curves = pd.concat(frames, ignore_index=True)[TABLES["deletion_curves.csv"]]

        # per-ranking per-image correctness and true-class probability, averaged over seeds
        names = [r.name for r in self.rankings]
        columns = {name: [c for c, (n_, _) in enumerate(self.curves) if n_ == name] for name in names}
        per_image = {name: correct[:, cols, :].mean(1) for name, cols in columns.items()}
        per_image_prob = {name: true_prob[:, cols, :].mean(1) for name, cols in columns.items()}
        accuracy = {name: v.mean(0) for name, v in per_image.items()}
        has_random = "random" in per_image
        weights = bootstrap_weights(n, st.n_boot, st.boot_seed)
        chance = chance_test(int(correct[:, 0, 0].sum()), n, self.n_classes)  # k = 0: nothing deleted yet

        summary_rows, test_frames = [], []
        for name in names:
            acc = accuracy[name]
            j_peak = int(np.argmax(acc))
            below = np.nonzero(acc < 0.5 * acc[0])[0]
            row = {
                "checkpoint": label, "ranking": name, "n_seeds": len(columns[name]),
                "auc": normalized_auc(fraction, acc), "acc_k0": float(acc[0]),
                "peak_accuracy": float(acc[j_peak]), "peak_k": int(steps[j_peak]),
                "prob_auc": normalized_auc(fraction, per_image_prob[name].mean(0)),
                "max_gap_k": pd.NA, "min_gap_k": pd.NA, "steps_above_random": pd.NA, "steps_below_random": pd.NA,
                "n_steps": len(steps), "half_accuracy_k": int(steps[below[0]]) if len(below) else pd.NA,
                "verdict": "",
            }
            if has_random and name != "random":
                row.update(_auc_comparison(fraction, per_image[name], per_image["random"], weights, "auc_diff"))
                row.update(_auc_comparison(fraction, per_image_prob[name], per_image_prob["random"], weights,
                                           "prob_auc_diff"))
                row["verdict"] = deletion_verdict(row["auc_diff_ci_low"], row["auc_diff_ci_high"], chance.at_chance)
                diff = per_image[name] - per_image["random"]  # [n, S]
                mean, low, high, se, p_boot = paired_bootstrap_test(diff, weights)
                j_gap, j_min = int(np.argmax(mean)), int(np.argmin(mean))
                above, below_random, _ = step_counts(low, high)
                row.update(max_gap_to_random=float(mean[j_gap]), max_gap_k=int(steps[j_gap]),
                           max_gap_ci_low=float(low[j_gap]), max_gap_ci_high=float(high[j_gap]),
                           min_gap_to_random=float(mean[j_min]), min_gap_k=int(steps[j_min]),
                           min_gap_ci_low=float(low[j_min]), min_gap_ci_high=float(high[j_min]),
                           steps_above_random=above, steps_below_random=below_random)
                if len(columns["random"]) == 1:
                    test = "mcnemar_exact"
                    a_bits = correct[:, columns[name][0], :]
                    b_bits = correct[:, columns["random"][0], :]
                    statistic, p_value = mcnemar_exact(a_bits, b_bits)
                else:
                    test = "paired_bootstrap"
                    with np.errstate(invalid="ignore", divide="ignore"):
                        statistic = np.where(se > 0, mean / np.where(se > 0, se, 1.0), np.nan)
                    p_value = p_boot
                test_frames.append(pd.DataFrame({
                    "checkpoint": label, "ranking": name, "k": steps, "test": test,
                    "accuracy": acc, "random_accuracy": accuracy["random"], "difference": mean,
                    "ci_low": low, "ci_high": high, "statistic": statistic, "p_value": p_value,
                }))
            summary_rows.append(row)
        summary = pd.DataFrame(summary_rows, columns=TABLES["deletion_summary.csv"])
        for col in ("max_gap_k", "min_gap_k", "half_accuracy_k", "peak_k", "n_seeds", "steps_above_random",
                    "steps_below_random", "n_steps"):
            summary[col] = summary[col].astype("Int64")
        tests = (
            pd.concat(test_frames, ignore_index=True)[TABLES["deletion_tests.csv"]]
            if test_frames else pd.DataFrame(columns=TABLES["deletion_tests.csv"])
        )

        first_curve = {name: cols[0] for name, cols in columns.items()}
        orders = {name: rec["orders"][:, c, :] for name, c in first_curve.items()}
        agreement = ranking_agreement(orders, label)
        tables = {
            "deletion_curves.csv": curves,
            "deletion_summary.csv": summary,
            "deletion_tests.csv": tests,
            "ranking_agreement.csv": agreement,
        }
        diag = {m: rec[f"diag_{m}"] for m in DIAGNOSTIC_METRICS if f"diag_{m}" in rec}
        if diag:
            tables["energy_diagnostics.csv"] = energy_diagnostics(diag, label, st.n_boot, st.boot_seed)
        return tables

    @property
    def n_classes(self) -> int:
        """Classes of the model's head (chance = 1 / n_classes): the config's ``num_classes``, else the
        width of the logits seen, else the head's ``out_features``."""
        config = getattr(self.model, "config", None)
        if config is not None and getattr(config, "num_classes", None):
            return int(config.num_classes)
        if getattr(self, "_logit_width", None):
            return self._logit_width
        out_features = getattr(getattr(self.model, "head", None), "out_features", None)
        if out_features is None:
            raise RuntimeError("bug: the number of classes is unknown before any update")
        return int(out_features)

    def verdicts(self, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
        """The chance test, each ranking's verdict and the sentences, for summary.json and the console
        (see :func:`deletion_verdicts`)."""
        note = None if self.diagnose else (
            "no energy diagnostics: the model has no Energy-Mask Layer energies (only ersm_unary and ersm_full do)"
        )
        return deletion_verdicts(tables, self.n_classes, self.settings.label, note)

    def describe(self) -> dict[str, Any]:
        """Plain description for summary.json: settings, curves, steps, skipped rankings."""
        return {
            "settings": asdict(self.settings),
            "rankings": [r.name for r in self.rankings],
            "ranking_descriptions": {r.name: r.description for r in self.rankings},
            "skipped_rankings": dict(self.skipped),
            "curves": [{"ranking": n, "seed": s} for n, s in self.curves],
            "k_values": self.steps.tolist(),
            "n_tokens": self.n_tokens,
            "grid": list(self.model.grid),
            "patch_size": int(self.model.config.patch_size),
            "cam": "exact (linear head)" if self.model.head_is_linear
            else "gradient x input (approximate: the head has a norm before its classifier)",
        }


def _auc_comparison(fraction: np.ndarray, curves: np.ndarray, random: np.ndarray, weights: np.ndarray, prefix: str) -> dict[str, float]:
    """ΔAUC of per-image curves [n, S] against random's (already averaged over seeds), paired over images:
    ``{prefix, prefix_ci_low, prefix_ci_high, prefix_p_value}``."""
    diff = normalized_auc(fraction, curves) - normalized_auc(fraction, random)  # [n]
    mean, low, high, _, p = paired_bootstrap_test(diff[:, None], weights)
    return {prefix: float(mean[0]), f"{prefix}_ci_low": float(low[0]), f"{prefix}_ci_high": float(high[0]),
            f"{prefix}_p_value": float(p[0])}


def deletion_chance_test(curves: pd.DataFrame, n_classes: int) -> ChanceTest:
    """The chance test of a run from its deletion_curves.csv: the k = 0 accuracy (the same for every
    curve, nothing is deleted yet) against 1 / ``n_classes``."""
    first = curves[curves["k"] == 0]
    if first.empty:
        raise DatasetError("deletion_curves.csv has no k = 0 rows, so the chance test cannot be computed")
    row = first.iloc[0]
    n = int(row["n_images"])
    return chance_test(int(round(float(row["accuracy"]) * n)), n, n_classes)


def deletion_verdicts(tables: dict[str, pd.DataFrame], n_classes: int, label: str = "",
                      diagnostics_note: str | None = None) -> dict[str, Any]:
    """What a deletion run concludes, for summary.json and the console, from its tables.

    Returns a dict with ``chance_test`` (k = 0 accuracy, Wilson interval, chance,
    ``at_chance``), ``verdicts`` (ranking → verdict; random is the reference and has
    none), ``sentences`` (``chance``, ``rankings``: ranking → sentence, ``position``:
    the energy diagnostics' sentence or None) and ``energy_diagnostics`` (metric →
    value, or the note saying why there are none). Every word comes from
    :mod:`ersm_eval.verdicts`.
    """
    test = deletion_chance_test(tables["deletion_curves.csv"], n_classes)
    summary = tables["deletion_summary.csv"]
    verdicts, sentences = {}, {}
    for row in summary.to_dict("records"):
        if row["ranking"] == "random":
            continue
        if test.at_chance:
            row["verdict"] = "not_testable"
        verdicts[row["ranking"]] = row["verdict"] if row["verdict"] else deletion_verdict(
            row.get("auc_diff_ci_low"), row.get("auc_diff_ci_high"), test.at_chance)
        sentences[row["ranking"]] = _verdicts.deletion_sentence(row, test, label)
    diag_table = tables.get("energy_diagnostics.csv")
    position, diagnostics = None, diagnostics_note
    if diag_table is not None and not diag_table.empty:
        values = dict(zip(diag_table["metric"], diag_table["value"].astype(float)))
        diagnostics = values
        position = _verdicts.position_sentence(values.get("spearman_center", float("nan")),
                                               values.get("spearman_neighbours", float("nan")),
                                               values.get("pairwise_share", float("nan")))
        diagnostics = {**values, "follows_position": _verdicts.follows_position(
            values.get("spearman_center", float("nan")), values.get("spearman_neighbours", float("nan")))}
    return {
        "chance_test": test.as_dict(),
        "verdicts": verdicts,
        "sentences": {"chance": _verdicts.chance_sentence(test, label), "rankings": sentences, "position": position},
        "energy_diagnostics": diagnostics,
    }


def sort_records(records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Records sorted by dataset index; a repeated index raises (an image counted twice)."""
    index = np.asarray(records["index"])
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    if len(sorted_index) > 1 and np.any(sorted_index[1:] == sorted_index[:-1]):
        dup = sorted_index[1:][sorted_index[1:] == sorted_index[:-1]][:5].tolist()
        raise ValueError(f"deletion records hold dataset indices more than once (first: {dup})")
    return {k: np.asarray(v)[order] for k, v in records.items()}


def token_score_arrays(records: dict[str, np.ndarray], curves: list[tuple[str, int]], grid: tuple[int, int]) -> dict[str, np.ndarray]:
    """Arrays for ``token_scores.npz``: index, label, grid, curve names, orders [n, R, N] and
    one [n, N] array per score (energy, unary, keep, magnitude, cam, ...), sorted by index."""
    rec = sort_records(records)
    out: dict[str, np.ndarray] = {
        "index": rec["index"],
        "label": rec["label"],
        "grid": np.asarray(grid, dtype=np.int64),
        "curve_names": np.asarray([f"{n}" if s < 0 else f"{n}_seed{s}" for n, s in curves]),
        "orders": rec["orders"],
    }
    for key, value in rec.items():
        if key.startswith("score_"):
            out[key.removeprefix("score_")] = value
    return out
