"""The functional API: deletion, occlusion and mask statistics of any classifier over a DataLoader.

Each function takes a model (an ERSM model, a timm CNN, or anything :func:`~ersm_eval.adapter.wrap`
accepts; pass ``wrap(model, layer=...)`` for other models) and an iterable of
batches, drives the evaluator's ``update() / records() / compute()`` and returns
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

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ersm_core.versions import versions
from ersm_core.errors import ConfigError, DatasetError, ERSMError
from ersm_eval.context import check_finite
from ersm_eval.adapter import ModelAdapter, wrap
from ersm_eval.deletion import DeletionEvaluator, DeletionSettings, token_pixel_map, token_score_arrays
from ersm_eval.localization import BOX_THRESHOLD, IOU_THRESHOLDS
from ersm_eval.occlusion import OcclusionConfig, OcclusionEvaluator, compute_occlusion, resolve_patterns
from ersm_eval.rankings import RANKINGS, register_score_ranking
from ersm_eval.results import EvaluationResult, ModelInfo, RunSummary, now
from ersm_eval.schema import MAPS_NPZ
from ersm_eval.sparsity import SparsityEvaluator, gallery_arrays, select_gallery

__all__ = [
    "ScoreMaps",
    "DatasetBatches",
    "combine_occlusion",
    "evaluate_deletion",
    "evaluate_occlusion",
    "mask_statistics",
    "external_rankings",
    "tokens_from_maps",
    "iterate_loader",
]

ScoreMaps = Any  # torch.Tensor | np.ndarray [n_images, h, w] or [n_images, H, W], or (model, x, y) -> [B, h|H, w|W]
Progress = Callable[[int], None]  # called with the number of images just evaluated

_RESERVED_KEYS = ("energy", "unary", "keep", "magnitude", "cam", "energy_unary", "energy_pairwise", "grid")


# -- batches ---------------------------------------------------------------------------
def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        batch = dict(item)
        missing = [k for k in ("image", "label") if k not in batch]
        if missing:
            raise DatasetError(
                f"dict batches need the keys 'image' and 'label' (got {sorted(batch)}); or yield (x, y) tuples"
            )
        return batch
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        batch = {"image": item[0], "label": item[1]}
        if len(item) == 3:
            extra = item[2]
            if isinstance(extra, Mapping):
                batch.update(extra)
            elif torch.is_tensor(extra) and extra.dim() == 3:
                batch["mask"] = extra
            else:
                raise DatasetError(
                    "the third element of an (x, y, extra) batch must be a dict (mask, box, has_mask, index) or a "
                    f"tensor of object masks [B, H, W]; got {type(extra).__name__}"
                    f"{' of shape ' + str(tuple(extra.shape)) if torch.is_tensor(extra) else ''}"
                )
        return batch
    raise DatasetError(
        f"a batch must be (x, y), (x, y, extra) or a dict with 'image' and 'label'; got {type(item).__name__}"
        f"{' of length ' + str(len(item)) if isinstance(item, (tuple, list)) else ''}"
    )


def iterate_loader(loader: Iterable[Any], device: torch.device | str) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Normalized batches on ``device`` and the loader positions of their images.

    Each batch dict has ``image`` [B, 3, H, W], ``label`` [B] long, ``index`` [B] long (the
    batch's own ``index`` if it has one, else the positions), ``has_mask`` [B] bool,
    ``mask`` [B, H, W] (zeros where unknown) and ``box`` [B, 4] (−1 where unknown).
    """
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, torch.utils.data.RandomSampler):
        raise DatasetError("the DataLoader shuffles (shuffle=True); evaluate with shuffle=False, since an image's "
                           "position in the loader is its index")
    position = 0
    for item in loader:
        batch = _as_dict(item)
        images = torch.as_tensor(batch["image"])
        if images.dim() != 4:
            raise DatasetError(f"images must be a batch [B, C, H, W], got shape {tuple(images.shape)}")
        images = images.to(device).float() if not images.is_floating_point() else images.to(device)
        n = images.shape[0]
        positions = np.arange(position, position + n, dtype=np.int64)
        check_finite(images, torch.as_tensor(positions), "input images")
        position += n
        labels = torch.as_tensor(batch["label"]).to(device).long().reshape(-1)
        if labels.shape[0] != n:
            raise DatasetError(f"a batch has {n} images but {labels.shape[0]} labels")
        index = batch.get("index")
        index = torch.as_tensor(positions) if index is None else torch.as_tensor(index).long().reshape(-1).cpu()
        height, width = images.shape[2:]
        mask = batch.get("mask")
        if mask is None:
            mask_t = torch.zeros(n, height, width, device=device)
            has_mask = torch.zeros(n, dtype=torch.bool)
        else:
            mask_t = torch.as_tensor(mask).to(device).float()
            if mask_t.dim() == 4 and mask_t.shape[1] == 1:
                mask_t = mask_t[:, 0]
            if tuple(mask_t.shape) != (n, height, width):
                raise DatasetError(f"object masks must be [B, H, W] = {(n, height, width)}, got {tuple(mask_t.shape)}")
            has_mask = torch.as_tensor(batch.get("has_mask", torch.ones(n, dtype=torch.bool))).bool().reshape(-1).cpu()
        box = batch.get("box")
        box_t = torch.full((n, 4), -1.0) if box is None else torch.as_tensor(box).float().reshape(n, 4)
        out = {"image": images, "label": labels, "index": index.to(device), "mask": mask_t, "has_mask": has_mask,
               "box": box_t.to(device)}
        yield out, positions


@dataclass
class DatasetBatches:
    """Batches already in the project's dict form, over known dataset indices (what the CLI feeds).

    The batches (``image`` or, for feature-level deletion, precomputed ``features``; ``label``,
    ``index``, and ``mask`` / ``has_mask`` / ``box`` where the dataset has them) may be this
    process's share only: under torchrun every process passes its share, the records are
    gathered on rank 0, which alone gets a result (the others get None).

    Attributes:
        batches: the batches, in any order.
        indices: every dataset index evaluated, ascending (all processes together): row i of
            external score maps belongs to image ``indices[i]``.
        has_masks: the dataset has object masks or boxes (occlusion's object/background patterns).
        dataset: the dataset, for the sparsity gallery's images (None: no gallery images).
        mean: the images' normalization mean.
        std: its standard deviation.
    """

    batches: Iterable[dict[str, Any]]
    indices: Sequence[int]
    has_masks: bool = False
    dataset: Any = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def _iterate(source: Any, device: torch.device) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """(batch, positions) from a loader (:func:`iterate_loader`) or :class:`DatasetBatches`
    (positions: each image's row in ``indices``)."""
    if not isinstance(source, DatasetBatches):
        yield from iterate_loader(source, device)
        return
    indices = np.asarray(source.indices, dtype=np.int64)
    for batch in source.batches:
        yield batch, np.searchsorted(indices, np.asarray(torch.as_tensor(batch["index"]).cpu(), dtype=np.int64))


def _gathered(records: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Every process's records on rank 0, sorted by index (None on the other ranks)."""
    from ersm_eval import distributed

    return distributed.gather_records(records)


def _prepare(model: nn.Module, images: torch.Tensor | None, verify: bool) -> tuple[Any, int]:
    """The wrapped model in eval mode, its grid fixed by a look at one image; and the class count.

    Without images (feature batches) the model must be the project's own (its grid is known)."""
    wrapped = wrap(model)
    wrapped.eval()
    if images is None:
        if isinstance(wrapped, ModelAdapter):
            raise ConfigError("feature batches need the project's own model; pass images for other models")
        return wrapped, int(wrapped.config.num_classes)
    with torch.no_grad():
        probe = images[: min(2, images.shape[0])]
        try:
            if isinstance(wrapped, ModelAdapter):
                wrapped.forward_features(probe)
                if verify:
                    wrapped.check_split(probe)
            logits = wrapped(probe)
        except (RuntimeError, ValueError, TypeError) as err:
            if isinstance(err, ERSMError):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"the model cannot run on the loader's images of shape {tuple(images.shape[1:])} "
                              f"(channels, height, width): {first}") from None
    return wrapped, int(logits.shape[1])


def _class_names(given: Sequence[str] | None, loader: Any, n_classes: int) -> list[str]:
    if given is not None:
        names = [str(c) for c in given]
    else:
        names = [str(c) for c in getattr(getattr(loader, "dataset", None), "classes", []) or []]
        if len(names) != n_classes:
            names = [str(k) for k in range(n_classes)]
    if len(names) != n_classes:
        raise ConfigError(f"class_names has {len(names)} names but the model has {n_classes} classes")
    return names


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _settings(cls: type, given: Any, overrides: dict[str, Any], what: str) -> Any:
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {what} setting{'s' if len(unknown) > 1 else ''} {unknown}; valid: {', '.join(valid)}")
    if given is None:
        return cls(**overrides)
    if not isinstance(given, cls):
        raise ConfigError(f"settings= takes a {cls.__name__}, got {type(given).__name__}")
    return replace(given, **overrides) if overrides else given


def _needs_normalization(what: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    if not mean or not std:
        raise ConfigError(
            f"{what} needs the images' normalization mean and std (pixel value 0 in normalized space); "
            "pass mean=(...) and std=(...) (e.g. ImageNet's (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225))"
        )


def _summary(command: str, label: str, n_images: int, class_names: list[str], model: Any, settings: dict[str, Any],
             evaluation: dict[str, Any], notes: list[str], started: float, stamp: str) -> RunSummary:
    import time

    return RunSummary(
        command=command, label=label, n_images=int(n_images), class_names=class_names, model=ModelInfo.of(model),
        settings=settings, evaluation=evaluation, notes=notes, versions=versions(), started=stamp,
        run_seconds=round(time.time() - started, 3),
    )


# -- external rankings -------------------------------------------------------------------
def _check_external_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or "," in name or name != name.strip():
        raise ConfigError(f"an external ranking name must be a non-empty word without commas, got {name!r}")
    if name in RANKINGS or name in _RESERVED_KEYS:
        raise ConfigError(f"the external ranking name {name!r} is taken by a built-in ranking or score; choose another, "
                          f"e.g. {name}_external")
    return name


@contextmanager
def external_rankings(names: Sequence[str]) -> Iterator[list[str]]:
    """Register, for the duration of the block, one ranking per external score name that deletes the
    highest score first (its score key is the name); they are removed from the registry afterwards, so
    evaluators built inside the block keep them and nothing else sees them."""
    names = [_check_external_name(n) for n in names]
    added: list[str] = []
    try:
        for name in names:
            register_score_ranking(name, name, True, f"external scores {name!r}: highest score first")
            added.append(name)
        yield names
    finally:
        for name in added:
            RANKINGS.unregister(name)


def tokens_from_maps(maps: torch.Tensor, grid: tuple[int, int], name: str = "scores") -> torch.Tensor:
    """Score maps [B, h, w] on the token grid, or [B, H, W] in pixels, as per-token scores [B, N].

    A pixel map gives each token the mean of the pixels under it: pixel (y, x) lies under
    token (⌊y·h/H⌋, ⌊x·w/W⌋), as :func:`ersm_eval.deletion.token_pixel_map` assigns them.
    """
    maps = torch.as_tensor(maps)
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise ConfigError(
            f"scores[{name!r}] must be maps [n_images, h, w] or [n_images, H, W], got shape {tuple(maps.shape)}"
            " (sum attributions over the colour channels first)"
        )
    maps = maps.double()
    if not bool(torch.isfinite(maps).all()):
        raise ConfigError(f"scores[{name!r}] holds NaN or infinite values")
    batch, height, width = maps.shape
    grid_h, grid_w = grid
    if (height, width) == (grid_h, grid_w):
        return maps.reshape(batch, -1)
    if height < grid_h or width < grid_w:
        raise ConfigError(f"scores[{name!r}] maps are {height}×{width}, smaller than the {grid_h}×{grid_w} token grid")
    pix = token_pixel_map((height, width), (grid_h, grid_w), maps.device).reshape(-1)
    sums = torch.zeros(batch, grid_h * grid_w, dtype=maps.dtype, device=maps.device)
    sums.index_add_(1, pix, maps.reshape(batch, -1))
    counts = torch.bincount(pix, minlength=grid_h * grid_w).to(maps.dtype)
    return sums / counts


def _external_batch(scores: Mapping[str, ScoreMaps], model: nn.Module, batch: dict[str, Any], positions: np.ndarray,
                    grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    out = {}
    for name, maps in scores.items():
        if callable(maps):
            value = maps(model, batch["image"], batch["label"])
            try:
                value = torch.as_tensor(value.detach() if torch.is_tensor(value) else np.asarray(value, dtype=np.float32))
            except (TypeError, ValueError) as err:
                raise ConfigError(f"scores[{name!r}] returned {type(value).__name__}, not maps of numbers "
                                  f"[B, h, w] ({err})") from None
            if value.dim() != 3:
                raise ConfigError(f"scores[{name!r}] returned shape {tuple(value.shape)}; it must return maps [B, h, w]")
            if value.shape[0] != len(positions):
                raise ConfigError(f"scores[{name!r}] gave {value.shape[0]} maps for a batch of {len(positions)} images")
        else:
            if len(positions) and int(positions.max()) >= len(maps):
                raise ConfigError(f"scores[{name!r}] holds {len(maps)} maps but the loader gives more images; "
                                  "give one map per image, in loader order")
            rows = torch.as_tensor(positions, dtype=torch.long)
            value = maps[rows.to(maps.device)] if torch.is_tensor(maps) else torch.as_tensor(np.asarray(maps)[positions])
        out[name] = tokens_from_maps(value.detach().cpu(), grid, name).float()
    return out


# -- deletion ----------------------------------------------------------------------------
def evaluate_deletion(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    scores: Mapping[str, ScoreMaps] | None = None,
    settings: DeletionSettings | None = None,
    label: str | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    verify: bool = True,
    progress: Progress | None = None,
    **overrides: Any,
) -> EvaluationResult:
    """Deletion curves: accuracy as tokens are deleted in the order of each ranking.

    Args:
        model: an ERSM model, a timm CNN, or a model wrapped with :func:`~ersm_eval.adapter.wrap`.
        loader: batches ``(x, y)``, ``(x, y, extra)`` or dicts (see the module docstring), not shuffled.
        scores: external rankings, ``{name: maps}`` (tensor [n_images, h, w] or [n_images, H, W], or a
            callable ``(model, x, y) -> maps``); the highest score is deleted first.
        settings: a :class:`~ersm_eval.deletion.DeletionSettings`; keyword ``overrides`` (rankings, seeds,
            steps, soft_gate, rescale, level, fill, ...) replace its fields.
        label: the model's name in the tables (default: its class or timm name).
        class_names: names of the classes (default: ``loader.dataset.classes``, else '0', '1', ...).
        mean: normalization mean of the images (input level with ``fill='black'`` only).
        std: its standard deviation.
        verify: check on the first batch that a wrapped model's split reproduces its logits.
        progress: called with the number of images of each batch evaluated.

    Returns:
        Tables deletion_curves.csv, deletion_summary.csv, deletion_tests.csv, ranking_agreement.csv
        (and whatever else the evaluator computes), the summary, and token_scores.npz with
        ``save_token_scores=True``.

    Raises:
        ConfigError: unknown settings or rankings, malformed score maps, a model that cannot be split.
        DatasetError: malformed batches, an empty loader.
    """
    started, stamp = now()
    st = _settings(DeletionSettings, settings, overrides, "deletion")
    scores = dict(scores or {})
    for name in scores:
        _check_external_name(name)
    if scores:
        st = replace(st, rankings=tuple(dict.fromkeys([*st.rankings, *scores])))
    with external_rankings(list(scores)):  # the evaluator keeps the ranking objects it resolved
        evaluator = _deletion_loop(model, loader, st, scores, label, mean, std, verify, progress)
    records = _gathered(evaluator.records())
    if records is None:  # a torchrun process other than rank 0
        return None
    n_images = len(records["index"])
    for name, maps in scores.items():
        if not callable(maps) and len(maps) != n_images:
            raise ConfigError(f"scores[{name!r}] holds {len(maps)} maps but the loader gave {n_images} images; "
                              "give one map per image, in loader order")
    tables = evaluator.compute(records)
    description = evaluator.describe()
    description.pop("settings", None)
    description["external_rankings"] = {name: ("callable" if callable(m) else f"maps {list(np.shape(m))}")
                                         for name, m in scores.items()}
    notes = [f"ranking {name} skipped: {reason}" for name, reason in evaluator.skipped.items()]
    arrays = {}
    if evaluator.settings.save_token_scores:
        arrays["token_scores.npz"] = token_score_arrays(records, evaluator.curves, tuple(evaluator.model.grid))
    summary = _summary("deletion", evaluator.settings.label, n_images,
                       _class_names(class_names, loader, evaluator.n_classes), evaluator.model,
                       asdict(evaluator.settings), description, notes, started, stamp)
    found = evaluator.verdicts(tables)
    summary.chance_test, summary.verdicts = found["chance_test"], found["verdicts"]
    summary.verdict_sentences, summary.energy_diagnostics = found["sentences"], found["energy_diagnostics"]
    return EvaluationResult(tables=tables, summary=summary, arrays=arrays, records=records)


def _deletion_evaluator(model: nn.Module, images: torch.Tensor | None, st: DeletionSettings, label: str | None,
                        mean: Sequence[float] | None, std: Sequence[float] | None, verify: bool) -> DeletionEvaluator:
    wrapped, _ = _prepare(model, images, verify)
    if isinstance(wrapped, ModelAdapter) and (mean is not None or std is not None):
        wrapped.mean, wrapped.std = tuple(mean or ()), tuple(std or ())
    if st.level == "input" and st.fill == "black":
        _needs_normalization("the black fill", tuple(wrapped.mean), tuple(wrapped.std))
    if not st.label:
        st = replace(st, label=label or ModelInfo.of(wrapped).name)
    return DeletionEvaluator(wrapped, st)


def _deletion_loop(model: nn.Module, loader: Any, st: DeletionSettings, scores: dict[str, ScoreMaps],
                   label: str | None, mean: Any, std: Any, verify: bool, progress: Progress | None) -> DeletionEvaluator:
    """Drive a deletion evaluator over the batches (this process's share under torchrun)."""
    evaluator = None
    if isinstance(loader, DatasetBatches):  # the project's model: the grid is known without a look at an image
        evaluator = _deletion_evaluator(model, None, st, label, mean, std, verify)
    for batch, positions in _iterate(loader, _device(model)):
        if evaluator is None:
            evaluator = _deletion_evaluator(model, batch["image"], st, label, mean, std, verify)
        if scores:
            batch["scores"] = _external_batch(scores, model, batch, positions, tuple(evaluator.model.grid))
        evaluator.update(batch)
        if progress is not None:
            progress(len(positions))
    if evaluator is None:
        raise DatasetError("the loader gave no images, so there is nothing to evaluate")
    return evaluator


# -- occlusion ---------------------------------------------------------------------------
def evaluate_occlusion(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    settings: OcclusionConfig | None = None,
    label: str | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 64,
    verify: bool = True,
    progress: Progress | None = None,
    **overrides: Any,
) -> EvaluationResult:
    """Occlusion stress test: accuracy under seeded occluders (fills × patterns × severities).

    Args:
        model: an ERSM model, a timm CNN, or a model wrapped with :func:`~ersm_eval.adapter.wrap`.
        loader: batches as for :func:`evaluate_deletion`; square images. The ``object`` and
            ``background`` patterns need object masks (``mask`` in the batches) and are skipped
            with a note without them.
        settings: an :class:`~ersm_eval.occlusion.OcclusionConfig`; keyword ``overrides`` (fills,
            patterns, severities, seeds, grid_size) replace its fields.
        label: the model's name in the tables.
        class_names: names of the classes.
        mean: normalization mean of the images (the ``black`` fill only).
        std: its standard deviation.
        batch_size: occluded images per forward pass.
        verify: check on the first batch that a wrapped model's split reproduces its logits.
        progress: called with the number of images of each batch evaluated.

    Returns:
        Tables occlusion.csv and occlusion_summary.csv, and the summary.
    """
    started, stamp = now()
    config = _settings(OcclusionConfig, settings, overrides, "occlusion")
    evaluator, notes, n_classes = _occlusion_loop(model, loader, config, mean, std, batch_size, verify, progress)
    records = _gathered(evaluator.records())
    if records is None:  # a torchrun process other than rank 0
        return None
    wrapped = evaluator.model
    name = label or ModelInfo.of(wrapped).name
    n_images = len(records["index"])
    curves, summary_table = compute_occlusion({name: records}, config, evaluator.patterns)
    evaluation = {"patterns_run": list(evaluator.patterns), "forward_passes": evaluator.forward_count(n_images),
                  "severity": "area fraction of the image; object/background: fraction of the object's/background's pixels"}
    summary = _summary("occlusion", name, n_images, _class_names(class_names, loader, n_classes), wrapped,
                       config.to_dict(), evaluation, notes, started, stamp)
    return EvaluationResult(tables={"occlusion.csv": curves, "occlusion_summary.csv": summary_table},
                            summary=summary, records=records)


def _occlusion_evaluator(model: nn.Module, images: torch.Tensor | None, has_masks: bool, config: OcclusionConfig,
                         mean: Any, std: Any, batch_size: int, verify: bool) -> tuple[OcclusionEvaluator, list[str], int]:
    wrapped, n_classes = _prepare(model, images, verify)
    img_mean = tuple(mean) if mean is not None else tuple(wrapped.mean)
    img_std = tuple(std) if std is not None else tuple(wrapped.std)
    if "black" in config.fills:
        _needs_normalization("the black fill", img_mean, img_std)
    active, skipped = resolve_patterns(config.patterns, has_masks, "the loader")
    channels = 3 if images is None else images.shape[1]
    evaluator = OcclusionEvaluator(wrapped, config, img_mean or (0.0,) * channels, img_std or (1.0,) * channels,
                                   active, batch_size)
    return evaluator, list(skipped.values()), n_classes


def _occlusion_loop(model: nn.Module, loader: Any, config: OcclusionConfig, mean: Any, std: Any, batch_size: int,
                    verify: bool, progress: Progress | None) -> tuple[OcclusionEvaluator, list[str], int]:
    """Drive an occlusion evaluator over the batches: (evaluator, notes on skipped patterns, class count)."""
    evaluator, notes, n_classes = None, [], 0
    if isinstance(loader, DatasetBatches):
        evaluator, notes, n_classes = _occlusion_evaluator(model, None, loader.has_masks, config, mean or loader.mean or None,
                                                std or loader.std or None, batch_size, verify)
    for batch, positions in _iterate(loader, _device(model)):
        height, width = batch["image"].shape[2:]
        if height != width:
            raise DatasetError(f"occlusion needs square images, got {height}×{width}; resize or crop them")
        if evaluator is None:
            evaluator, notes, n_classes = _occlusion_evaluator(model, batch["image"], bool(batch["has_mask"].any()), config,
                                                    mean, std, batch_size, verify)
        evaluator.update(batch)
        if progress is not None:
            progress(len(positions))
    if evaluator is None:
        raise DatasetError("the loader gave no images, so there is nothing to evaluate")
    return evaluator, notes, n_classes


def combine_occlusion(results: Sequence[EvaluationResult]) -> EvaluationResult:
    """One occlusion result for several models that saw the same images and occluders.

    The tables compare every model with the first (``diff_auc_to_first``); the summary is the
    first's, with ``labels`` naming them all.

    Raises:
        ConfigError: results of other commands, repeated labels, or different settings.
    """
    results = list(results)
    labels = [r.summary.label for r in results]
    if not results or any(r.summary.command != "occlusion" for r in results):
        raise ConfigError("combine_occlusion takes results of evaluate_occlusion")
    if len(set(labels)) < len(labels):
        raise ConfigError(f"the models' labels must differ, got {labels}; pass label= to evaluate_occlusion")
    first = results[0].summary
    if any(r.summary.settings != first.settings for r in results):
        raise ConfigError("occlusion results to combine must share their settings (fills, patterns, severities, seeds)")
    config = _config_of(first.settings)
    active = first.evaluation["patterns_run"]
    curves, table = compute_occlusion({r.summary.label: r.records for r in results}, config, active)
    summary = replace(first, labels=labels, label=labels[0] if len(labels) == 1 else " vs ".join(labels),
                      notes=list(dict.fromkeys(n for r in results for n in r.summary.notes)),
                      run_seconds=round(sum(r.summary.run_seconds for r in results), 3))
    return EvaluationResult(tables={"occlusion.csv": curves, "occlusion_summary.csv": table}, summary=summary,
                            records={})


def _config_of(settings: dict[str, Any]) -> OcclusionConfig:
    valid = {f.name for f in fields(OcclusionConfig)}
    return OcclusionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in valid})


# -- mask statistics ---------------------------------------------------------------------
class _GalleryImages:
    """The two things :func:`~ersm_eval.sparsity.gallery_arrays` reads from a dataset, from kept images."""

    def __init__(self, images: dict[int, np.ndarray], masks: dict[int, np.ndarray] | None) -> None:
        self.images = images
        self.masks = masks
        self.has_masks = masks is not None

    def image_uint8(self, index: int) -> np.ndarray:
        return self.images[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"mask": torch.from_numpy(self.masks[index])}


def _to_uint8(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Normalized images [B, 3, H, W] as [B, H, W, 3] uint8 (min-max per image when mean/std are unknown)."""
    x = images.detach().float().cpu()
    if mean and std:
        x = x * torch.tensor(std)[None, :, None, None] + torch.tensor(mean)[None, :, None, None]
    else:
        low = x.flatten(1).amin(1)[:, None, None, None]
        high = x.flatten(1).amax(1)[:, None, None, None]
        x = (x - low) / (high - low).clamp_min(1e-12)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def mask_statistics(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    label: str | None = None,
    class_names: Sequence[str] | None = None,
    localize: bool = True,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    box_threshold: float = BOX_THRESHOLD,
    seed: int = 0,
    n_boot: int = 1000,
    gallery: bool = True,
    gallery_indices: Sequence[int] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    verify: bool = True,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Sparsity, coherence and localization of the model's maps (keep and energy for ERSM, CAM for all).

    Args:
        model: an ERSM model, a timm CNN, or a model wrapped with :func:`~ersm_eval.adapter.wrap`.
        loader: batches as for :func:`evaluate_deletion`; localization needs ``mask`` (and optionally
            ``box``) in them and is skipped with a note otherwise.
        label: the model's name in the tables.
        class_names: names of the classes (per_class_keep.csv).
        localize: compare the maps with the object masks where the batches have them.
        iou_thresholds: fractions of a map's max for the mask IoU.
        box_threshold: fraction of a map's max for the box protocol.
        seed: seed of the bootstrap intervals.
        n_boot: bootstrap resamples.
        gallery: keep the images chosen for the report's galleries and write maps.npz (the loader is
            read a second time for them; a one-shot iterator gets no gallery, with a note).
        gallery_indices: indices always put in the gallery.
        mean: normalization mean, to show gallery images in their colours (else min-max scaled).
        std: its standard deviation.
        verify: check on the first batch that a wrapped model's split reproduces its logits.
        progress: called with the number of images of each batch evaluated.

    Returns:
        Tables sparsity_summary.csv, per_image.csv, per_class_keep.csv (keep_histogram.csv for gated
        models), the summary, and maps.npz.
    """
    started, stamp = now()
    evaluator, n_classes = _sparsity_loop(model, loader, localize, iou_thresholds, box_threshold, verify, progress)
    records = _gathered(evaluator.records())
    if records is None:  # a torchrun process other than rank 0
        return None
    wrapped = evaluator.model
    name = label or ModelInfo.of(wrapped).name
    names = _class_names(class_names, loader, n_classes)
    result = evaluator.compute(records, name, names, seed=seed, n_boot=n_boot)
    notes = list(result.notes)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    chosen: list[int] = []
    if gallery:
        chosen = select_gallery(result.tables["per_image.csv"], gallery_indices)
        missing = sorted(set(gallery_indices) - set(chosen))
        if missing:
            notes.append(f"gallery indices {missing} were not evaluated (outside the images evaluated) and are not "
                         f"in {MAPS_NPZ}")
        images = _gallery_source(loader, wrapped, records, chosen, mean, std, notes)
        if images is not None:
            arrays[MAPS_NPZ] = gallery_arrays(images, records, chosen, evaluator.map_names)
    evaluation = {**result.info, "gallery_indices": chosen}
    summary = _summary("sparsity", name, len(records["index"]), names, wrapped,
                       {"localize": localize, "iou_thresholds": list(iou_thresholds), "box_threshold": box_threshold,
                        "seed": seed, "n_boot": n_boot}, evaluation, notes, started, stamp)
    return EvaluationResult(tables=result.tables, summary=summary, arrays=arrays, records=records)


def _sparsity_loop(model: nn.Module, loader: Any, localize: bool, iou_thresholds: Sequence[float],
                   box_threshold: float, verify: bool, progress: Progress | None) -> tuple[SparsityEvaluator, int]:
    """Drive a mask-statistics evaluator over the batches: (evaluator, class count)."""
    evaluator, n_classes = None, 0

    def build(images: torch.Tensor | None) -> SparsityEvaluator:
        nonlocal n_classes
        wrapped, n_classes = _prepare(model, images, verify)
        return SparsityEvaluator(wrapped, localize=localize, iou_thresholds=iou_thresholds, box_threshold=box_threshold)

    if isinstance(loader, DatasetBatches):
        evaluator = build(None)
    for batch, positions in _iterate(loader, _device(model)):
        if evaluator is None:
            evaluator = build(batch["image"])
        evaluator.update(batch)
        if progress is not None:
            progress(len(positions))
    if evaluator is None:
        raise DatasetError("the loader gave no images, so there is nothing to evaluate")
    return evaluator, n_classes


def _gallery_source(loader: Any, wrapped: Any, records: dict[str, np.ndarray], chosen: list[int], mean: Any, std: Any,
                    notes: list[str]) -> Any:
    """What :func:`~ersm_eval.sparsity.gallery_arrays` reads the gallery images from: the dataset of
    :class:`DatasetBatches`, else the loader read a second time (None, with a note, for a one-shot iterator)."""
    if isinstance(loader, DatasetBatches):
        return loader.dataset
    if iter(loader) is loader:
        notes.append(f"no {MAPS_NPZ}: the loader is a one-shot iterator, so the gallery images could not be read again")
        return None
    img_mean = tuple(mean) if mean is not None else tuple(wrapped.mean)
    img_std = tuple(std) if std is not None else tuple(wrapped.std)
    wanted = set(chosen)
    images: dict[int, np.ndarray] = {}
    masks: dict[int, np.ndarray] = {}
    for batch, _ in iterate_loader(loader, "cpu"):
        rows = [r for r, i in enumerate(batch["index"].tolist()) if i in wanted]
        if rows:
            pixels = _to_uint8(batch["image"][rows], img_mean, img_std)
            for j, r in enumerate(rows):
                index = int(batch["index"][r])
                images[index] = pixels[j]
                masks[index] = batch["mask"][r].numpy().astype(np.float32)
    return _GalleryImages(images, masks if bool(records["has_mask"].any()) else None)
