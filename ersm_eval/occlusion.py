"""Input-level occlusion stress test: accuracy under fills × patterns × severities.

:class:`OcclusionEvaluator` occludes each image with the seeded occluders of
:mod:`ersm_eval.occluders` and runs the full model on every occluded copy. It
follows "accumulate, then compute": ``update(batch)`` stores, per image, the
correctness and true-class probability of every (seed, fill, pattern, severity),
``records()`` returns numpy arrays with the image axis first (what
:func:`ersm_eval.distributed.gather_records` gathers), and ``compute(records)``
returns the ``occlusion.csv`` and ``occlusion_summary.csv`` tables; for several
checkpoints on the same images, :func:`compute_occlusion` tabulates their records
together.

Conventions:

- Severity 0 is always evaluated (the clean image, shared by every fill and
  pattern) because relative robustness is acc(s) / acc(0).
- Seeds are pooled: a row's ``n`` is images × seeds and its accuracy the mean
  over both. The 95% interval is Wilson's with one seed, and a percentile
  bootstrap over images (each image's accuracy averaged over the seeds, 1000
  resamples, seed 0) with several, since the seeds of one image are not
  independent draws.
- Patterns that need object masks (object, background) count only images with
  an object mask or box; others get NaN records and are left out of ``n``.
- The AUC is the normalized area under accuracy vs severity
  (:func:`ersm_eval.stats.normalized_auc`). The difference to the first
  checkpoint is paired over images: each image's AUC (from its seed-averaged
  correctness curve) minus the first checkpoint's, with a paired bootstrap
  interval and p-value (1000 resamples, seed 0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ersm_core.errors import ConfigError, DatasetError
from ersm_eval.context import check_finite, check_labels
from ersm_eval.forward import FORWARD_CHUNK, fixed_chunks
from ersm_eval.occluders import FILLS, PATTERNS, apply_occluder, check_severities, fill_values, pattern_masks
from ersm_eval.schema import TABLES
from ersm_eval.records import concat_records, no_images_error, sort_records
from ersm_eval.stats import bootstrap_mean_ci, normalized_auc, paired_bootstrap_diff, wilson_interval

__all__ = [
    "DEFAULT_FILLS",
    "DEFAULT_PATTERNS",
    "DEFAULT_SEVERITIES",
    "FILL_ALIASES",
    "OcclusionSettings",
    "OcclusionConfig",
    "OcclusionEvaluator",
    "resolve_patterns",
    "compute_occlusion",
]

DEFAULT_FILLS = ("gray",)
DEFAULT_PATTERNS = ("random_squares", "grid", "center", "object", "background")
DEFAULT_SEVERITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
FILL_ALIASES = {"mean": "gray"}  # the gray fill is also called "mean"


@dataclass(frozen=True)
class OcclusionSettings:
    """What to occlude; validated once when made (a ValueError, :class:`ConfigError`, names the
    bad field); :meth:`to_dict` goes into summary.json."""

    fills: tuple[str, ...] = DEFAULT_FILLS  # registered fill names
    patterns: tuple[str, ...] = DEFAULT_PATTERNS  # registered pattern names
    severities: tuple[float, ...] = DEFAULT_SEVERITIES  # area fractions; 0 is always added
    seeds: tuple[int, ...] = (0,)  # occluder seeds (pooled in the tables)
    grid_size: int = 4  # cells per side of the grid pattern

    def __post_init__(self) -> None:
        fills = tuple(dict.fromkeys(FILL_ALIASES.get(f, f) for f in self.fills))
        patterns = tuple(dict.fromkeys(self.patterns))
        if not fills:
            raise ConfigError("occlusion needs at least one fill")
        if not patterns:
            raise ConfigError("occlusion needs at least one pattern")
        for name in fills:
            FILLS.get(name)
        for name in patterns:
            PATTERNS.get(name)
        seeds = tuple(dict.fromkeys(int(s) for s in self.seeds))
        if not seeds:
            raise ConfigError("occlusion needs at least one seed")
        if any(s < 0 for s in seeds):
            raise ConfigError(f"seeds must be non-negative integers, got {list(seeds)}")
        if self.grid_size < 1:
            raise ConfigError(f"--grid-size must be at least 1, got {self.grid_size}")
        object.__setattr__(self, "fills", fills)
        object.__setattr__(self, "patterns", patterns)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "severities", check_severities(self.severities))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain lists and numbers (summary.json)."""
        return {"fills": list(self.fills), "patterns": list(self.patterns), "severities": list(self.severities),
                "seeds": list(self.seeds), "grid_size": self.grid_size}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "OcclusionSettings":
        """Settings from :meth:`to_dict`'s plain values (other keys are ignored)."""
        valid = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in valid})


OcclusionConfig = OcclusionSettings  # the former name


def resolve_patterns(patterns: Sequence[str], has_masks: bool, dataset_name: str = "the dataset") -> tuple[list[str], dict[str, str]]:
    """Split patterns into those that can run and those skipped (name → reason).

    Raises ConfigError when nothing is left.
    """
    active, skipped = [], {}
    for name in patterns:
        if PATTERNS.get(name).needs_mask and not has_masks:
            skipped[name] = f"pattern {name!r} skipped: {dataset_name} has no object masks or boxes"
        else:
            active.append(name)
    if not active:
        raise ConfigError(f"no occlusion pattern can run: {'; '.join(skipped.values())}; choose patterns such as random_squares,grid,center")
    return active, skipped


class OcclusionEvaluator:
    """Accuracy of one model under every (seed, fill, pattern, severity) occluder.

    Args:
        model: the model (eval mode, on its device).
        config: the settings: fills, patterns, severities, seeds, grid size.
        mean: the normalization mean of the model's transform (for the ``black`` fill).
        std: its standard deviation.
        patterns: the patterns to run (default ``config.patterns``; see :func:`resolve_patterns`).
        batch_size: occluded images per forward pass.
        label: the model's name in the tables' checkpoint column.
    """

    def __init__(
        self,
        model: Any,
        config: OcclusionSettings | None = None,
        mean: Sequence[float] = (),
        std: Sequence[float] = (),
        patterns: Sequence[str] | None = None,
        batch_size: int = 64,
        label: str = "",
    ) -> None:
        self.model = model
        self.config = config = config if config is not None else OcclusionSettings()
        self.label = label
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.patterns = list(config.patterns if patterns is None else patterns)
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.reset()

    @property
    def settings(self) -> OcclusionSettings:
        """The settings (also ``config``)."""
        return self.config

    def reset(self) -> None:
        """Forget every record."""
        self._parts: list[dict[str, np.ndarray]] = []

    @property
    def n_images(self) -> int:
        """Images added since the last reset."""
        return sum(len(p["index"]) for p in self._parts)

    def forward_count(self, n_images: int) -> int:
        """Forward passes per ``n_images`` images (for progress estimates)."""
        cfg, n_sev = self.config, sum(1 for s in self.config.severities if s > 0)
        per_image = 1
        for name in self.patterns:
            seeded_pattern = PATTERNS.get(name).seeded
            for fill in cfg.fills:
                runs = len(cfg.seeds) if (seeded_pattern or FILLS.get(fill).seeded) else 1
                per_image += runs * n_sev
        return per_image * n_images

    def _predict(self, images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int],
                 what: str = "logits") -> tuple[np.ndarray, np.ndarray]:
        """(correct, true-class probability) for images [M, 3, S, S] of dataset ``indices`` [M].

        Non-finite logits stop the run (:func:`ersm_eval.context.check_finite`), naming
        the images: a softmax of inf or NaN would give a silent, meaningless accuracy.

        The model runs on fixed-size chunks (:func:`ersm_eval.forward.fixed_chunks`):
        kernels pick their code path from the batch shape, so chunks of ``batch_size``
        made the last float bits depend on ``--batch-size``; fixed chunks make every
        result bitwise the same for every batch size, 1 included. Inputs go in
        channels-last layout: on the CPU the convolutions run about 1.7x faster that
        way. ``batch_size`` bounds how many occluded images are built at once.
        """
        correct, prob = [], []
        for start in range(0, images.shape[0], max(self.batch_size, FORWARD_CHUNK)):
            stop = start + max(self.batch_size, FORWARD_CHUNK)
            x, y = images[start:stop], labels[start:stop]
            x = x.contiguous(memory_format=torch.channels_last)
            logits = fixed_chunks(self.model, x)
            check_finite(logits, indices[start:stop], what)
            check_labels(y, logits.shape[1], indices[start:stop])
            p = torch.softmax(logits.float(), dim=1)
            correct.append((p.argmax(1) == y).cpu().numpy())
            prob.append(p.gather(1, y[:, None])[:, 0].cpu().numpy())
        return np.concatenate(correct).astype(np.float32), np.concatenate(prob).astype(np.float32)

    @torch.no_grad()
    def update(self, batch: dict[str, Any]) -> None:
        """Add the records of one batch (keys image, label, index, mask, has_mask)."""
        cfg = self.config
        images = batch["image"]
        height, width = images.shape[2:]
        if height != width:
            raise DatasetError(f"occlusion needs square images, got {height}×{width}; resize or crop them")
        device = images.device
        labels = torch.as_tensor(batch["label"], device=device)
        indices = [int(i) for i in torch.as_tensor(batch["index"]).tolist()]
        has_mask = np.asarray(torch.as_tensor(batch["has_mask"]).cpu().numpy(), dtype=bool)
        object_masks = batch["mask"].detach().cpu().numpy()
        n_img, size = images.shape[0], images.shape[-1]
        sev = list(cfg.severities)
        nonzero = [j for j, s in enumerate(sev) if s > 0]
        shape = (n_img, len(cfg.seeds), len(cfg.fills), len(self.patterns), len(sev))
        correct = np.full(shape, np.nan, dtype=np.float32)
        prob = np.full(shape, np.nan, dtype=np.float32)

        clean_c, clean_p = self._predict(images, labels, indices)
        fills_cache: dict[tuple[int, str], torch.Tensor] = {}

        def fill_for(seed_pos: int, fill: str) -> torch.Tensor:
            key = (seed_pos if FILLS.get(fill).seeded else 0, fill)
            if key not in fills_cache:
                fills_cache[key] = fill_values(fill, images, self.mean, self.std, cfg.seeds[seed_pos], indices)
            return fills_cache[key]

        sev_nz = [sev[j] for j in nonzero]
        for pi, name in enumerate(self.patterns):
            pattern = PATTERNS.get(name)
            usable = [b for b in range(n_img) if has_mask[b] or not pattern.needs_mask]
            masks_by_seed: dict[int, tuple[list[int], torch.Tensor | None]] = {}
            for si, seed in enumerate(cfg.seeds):
                if not pattern.seeded and si > 0:
                    masks_by_seed[si] = masks_by_seed[0]
                else:
                    rows, stack = [], []
                    for b in usable:
                        m = pattern_masks(name, size, sev_nz, seed, indices[b],
                                          object_masks[b] if pattern.needs_mask else None, cfg.grid_size)
                        if m is not None:
                            rows.append(b)
                            stack.append(m)
                    tensor = torch.from_numpy(np.stack(stack)).to(device) if stack else None
                    masks_by_seed[si] = (rows, tensor)
                rows, masks = masks_by_seed[si]
                if not rows:
                    continue
                for fi, fill in enumerate(cfg.fills):
                    correct[rows, si, fi, pi, 0] = clean_c[rows]  # severity 0: the clean image
                    prob[rows, si, fi, pi, 0] = clean_p[rows]
                    if not nonzero:
                        continue
                    if si > 0 and not pattern.seeded and not FILLS.get(fill).seeded:
                        correct[rows, si, fi, pi] = correct[rows, 0, fi, pi]
                        prob[rows, si, fi, pi] = prob[rows, 0, fi, pi]
                        continue
                    sel = torch.as_tensor(rows, device=device)
                    occluded = apply_occluder(images[sel], masks, fill_for(si, fill)[sel])  # [R, K, 3, S, S]
                    k = occluded.shape[1]
                    c, p = self._predict(occluded.reshape(-1, *occluded.shape[2:]), labels[sel].repeat_interleave(k),
                                         [indices[b] for b in rows for _ in range(k)],
                                         f"logits of occluded images ({name}, {fill})")
                    correct[np.ix_(rows, [si], [fi], [pi], nonzero)] = c.reshape(len(rows), 1, 1, 1, k)
                    prob[np.ix_(rows, [si], [fi], [pi], nonzero)] = p.reshape(len(rows), 1, 1, 1, k)
        self._parts.append({
            "index": np.asarray(indices, dtype=np.int64),
            "label": labels.cpu().numpy().astype(np.int64),
            "correct": correct,
            "true_prob": prob,
        })

    def records(self) -> dict[str, np.ndarray]:
        """Per-image arrays (image axis first): index, label, and correct / true_prob of shape
        [n, seeds, fills, patterns, severities] (NaN where a pattern does not apply).

        Raises:
            DatasetError: no image was added (:func:`ersm_eval.records.no_images_error`).
        """
        return concat_records(self._parts, "occlusion")

    def compute(self, records: dict[str, np.ndarray] | None = None) -> dict[str, pd.DataFrame]:
        """occlusion.csv and occlusion_summary.csv of ``records`` in any order (default: this
        evaluator's own), under the evaluator's label."""
        rec = self.records() if records is None else records
        curves, summary = compute_occlusion({self.label: rec}, self.config, self.patterns)
        return {"occlusion.csv": curves, "occlusion_summary.csv": summary}


def _seed_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the seed axis (1), NaN where every seed is NaN, without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=1)


def compute_occlusion(
    runs: dict[str, dict[str, np.ndarray]],
    config: OcclusionSettings,
    patterns: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``occlusion.csv`` and ``occlusion_summary.csv`` for the records of one or more checkpoints.

    Args:
        runs: checkpoint label → records (from :meth:`OcclusionEvaluator.records`, possibly
            gathered); the first is the reference of ``diff_auc_to_first``.
        config: the configuration the records were made with.
        patterns: the patterns that ran (default ``config.patterns``).

    Extra columns after the schema's: occlusion.csv ``n_images``, ``n_seeds``;
    occlusion_summary.csv ``n_images``, ``diff_p_value``.
    """
    if not runs:
        raise ValueError("no checkpoints to tabulate")
    if any(len(rec["index"]) == 0 for rec in runs.values()):
        raise no_images_error("occlusion")
    patterns = list(config.patterns if patterns is None else patterns)
    severities = np.asarray(config.severities, dtype=np.float64)
    n_seeds = len(config.seeds)
    runs = {name: sort_records(rec, "occlusion") for name, rec in runs.items()}
    names = list(runs)
    first = runs[names[0]]
    for name in names[1:]:
        if not np.array_equal(runs[name]["index"], first["index"]):
            raise ValueError(f"checkpoint {name!r} was evaluated on other images than {names[0]!r}")
    curve_rows, summary_rows = [], []
    for name in names:
        rec = runs[name]
        with warnings.catch_warnings():  # all-NaN rows of inapplicable patterns
            warnings.simplefilter("ignore", category=RuntimeWarning)
            per_image_c = np.nanmean(rec["correct"], axis=1)  # [n, fills, patterns, K]
            per_image_p = np.nanmean(rec["true_prob"], axis=1)
        for fi, fill in enumerate(config.fills):
            for pi, pattern in enumerate(patterns):
                c = per_image_c[:, fi, pi]
                p = per_image_p[:, fi, pi]
                valid = np.isfinite(c[:, 0])
                n_img = int(valid.sum())
                if n_img == 0:
                    continue
                c, p = c[valid], p[valid]
                acc = c.mean(0)
                if n_seeds == 1:
                    low, high = wilson_interval(c.sum(0), n_img)
                else:
                    low, high = bootstrap_mean_ci(c, n_boot=n_boot, seed=seed)
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = acc / acc[0] if acc[0] > 0 else np.full_like(acc, np.nan)
                for j, s in enumerate(severities):
                    curve_rows.append({
                        "checkpoint": name, "fill": fill, "pattern": pattern, "severity": float(s),
                        "n": n_img * n_seeds, "accuracy": float(acc[j]), "ci_low": float(low[j]),
                        "ci_high": float(high[j]), "mean_true_prob": float(p[:, j].mean()),
                        "relative_robustness": float(rel[j]), "n_images": n_img, "n_seeds": n_seeds,
                    })
                auc_images = normalized_auc(severities, c)
                row = {
                    "checkpoint": name, "fill": fill, "pattern": pattern, "auc": float(auc_images.mean()),
                    "acc0": float(acc[0]),
                    "mean_relative_robustness": float(np.mean(rel[1:])) if len(rel) > 1 else np.nan,
                    "min_relative_robustness": float(np.min(rel[1:])) if len(rel) > 1 else np.nan,
                    "diff_auc_to_first": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan,
                    "n_images": n_img, "diff_p_value": np.nan,
                }
                if name != names[0]:
                    ref = _seed_mean(first["correct"][:, :, fi, pi])
                    both = valid & np.isfinite(ref[:, 0])
                    mine = _seed_mean(rec["correct"][:, :, fi, pi])[both]
                    if both.any():
                        diff, dlow, dhigh, pval = paired_bootstrap_diff(
                            normalized_auc(severities, mine), normalized_auc(severities, ref[both]), n_boot=n_boot, seed=seed
                        )
                        row.update(diff_auc_to_first=float(diff), diff_ci_low=float(dlow), diff_ci_high=float(dhigh),
                                   diff_p_value=float(pval))
                summary_rows.append(row)
    curves = pd.DataFrame(curve_rows, columns=TABLES["occlusion.csv"] + ["n_images", "n_seeds"])
    summary = pd.DataFrame(summary_rows, columns=TABLES["occlusion_summary.csv"] + ["n_images", "diff_p_value"])
    return curves, summary
