"""Randomization check of maps (Adebayo et al., 2018, "Sanity Checks for Saliency Maps").

A map that explains what a model learned must change when what it learned is
destroyed. Each map (``keep``, ``energy``, ``cam``, and external maps given as
callables) is recomputed on copies of the model whose parameters are
re-initialized cumulatively from the top (:data:`RANDOMIZATION_STEPS`):

1. ``head``: the classifier (and any pre-logits step, e.g. ConvNeXt's norm);
2. ``spatial``: the head and the spatial module (the Energy-Mask Layer or L0 gate);
3. ``backbone_last``: those and the backbone's last stage.

A step whose module is absent (a wrapped model, or a variant whose spatial module
holds no parameters) is skipped with a note; the later steps still randomize what
exists. Re-initializing means: a deep copy of the model, then ``reset_parameters()``
on every submodule of the chosen modules that has it, under ``torch.manual_seed(seed)``
inside ``torch.random.fork_rng`` (the caller's model and random state are untouched).
Parameters that no ``reset_parameters()`` covers (the Energy-Mask Layer's scalar bias,
which shifts every token alike and so changes no rank) keep their trained values and
are named in the notes.

Per step and map: the per-image Spearman correlation between the original and the
recomputed map on the token grid (average ranks for ties), its mean over images
and a bootstrap 95% interval over images. An image whose map is constant in
either version has no correlation and is left out (``n_images`` counts the rest).
The CAM is always the map of the class the *original* model predicts, so a change
reflects the parameters, not a switched class.

The rule (:func:`dependence_verdict`): a map whose mean correlation is still ≥ 0.5
after *its own* module (:data:`OWN_STEP`: keep and energy → the spatial module, CAM →
the head, an external map → the last step checked) is re-initialized does not
depend on what that module learned, and :func:`randomization_warning` says so.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from ersm_core.errors import ConfigError
from ersm_eval.adapter import model_kind
from ersm_eval.cam import cam_scores
from ersm_eval.diagnostics import rank_pearson
from ersm_eval.forward import fixed_chunks
from ersm_eval.stats import bootstrap_mean_ci, bootstrap_weights
from ersm_eval.verdicts.randomization import (  # noqa: F401 - the rule, re-exported beside the check
    DEPENDENCE_THRESHOLD, DEPENDENCE_VERDICTS, OWN_STEP, dependence_verdict, own_step, randomization_warning,
)

__all__ = [
    "RANDOMIZATION_STEPS",
    "RANDOMIZATION_COLUMNS",
    "OWN_STEP",
    "DEPENDENCE_THRESHOLD",
    "DEPENDENCE_VERDICTS",
    "randomization_plan",
    "randomized_copy",
    "map_spearman",
    "map_randomization",
    "own_step",
    "dependence_verdict",
    "randomization_warning",
]

RANDOMIZATION_STEPS = ("head", "spatial", "backbone_last")  # cumulative, from the top
RANDOMIZATION_COLUMNS = ("checkpoint", "map", "randomized", "n_images", "spearman", "ci_low", "ci_high")

ExternalMap = Callable[[Any, torch.Tensor, torch.Tensor], Any]  # (model, images, labels) -> [B, h|H, w|W]


# -- which modules ------------------------------------------------------------------------


def _has_parameters(module: nn.Module | None) -> bool:
    return module is not None and any(True for _ in module.parameters())


def _last_stage(backbone: nn.Module, prefix: str) -> str | None:
    """Name of the backbone's last stage: timm's last ``feature_info`` module, else the last
    child holding parameters, descending through wrappers with a single such child."""
    info = getattr(backbone, "feature_info", None)
    if isinstance(info, (list, tuple)) and info and isinstance(info[-1], Mapping) and info[-1].get("module"):
        return f"{prefix}{info[-1]['module']}"
    name, module = prefix.rstrip("."), backbone
    while True:
        children = [(n, c) for n, c in module.named_children() if _has_parameters(c)]
        if not children:
            return name or None
        child_name, child = children[-1]
        name = f"{name}.{child_name}" if name else child_name
        if len(children) > 1:
            return name
        module = child


def randomization_plan(model: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The modules each step re-initializes and why a step is skipped.

    Returns:
        (step → names of the modules it adds, as in ``model.named_modules()``;
        step → note, for the steps this model does not have).
    """
    kind = model_kind(model)
    if kind not in ("ersm", "adapter"):
        raise ConfigError(f"the randomization check needs an ERSM model or a wrapped one; wrap this "
                          f"{type(model).__name__} first (ersm_eval.wrap(model, layer=...))")
    plan: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    kind = getattr(model, "kind", None)
    if kind is None:  # an ERSMModel
        plan["head"] = [n for n in ("pre_logits", "head") if _has_parameters(getattr(model, n, None))]
        if _has_parameters(getattr(model, "spatial", None)):
            plan["spatial"] = ["spatial"]
        else:
            notes["spatial"] = (f"the {model.config.variant} variant's spatial module holds no parameters, "
                                "so there is nothing to re-initialize")
        stage = _last_stage(model.backbone, "backbone.")
    else:  # a ModelAdapter
        inner = model.model
        timm_head = getattr(inner, "head", None)
        if kind == "timm" and isinstance(timm_head, nn.Module) and any(m is model.head for m in timm_head.modules()):
            plan["head"] = ["model.head"]  # the classifier with its norm / pre-logits
        else:
            plan["head"] = ["head"]
        notes["spatial"] = "a wrapped model has no spatial module between its map and its pooling"
        if kind == "timm":
            stage = _last_stage(inner, "model.")
        else:  # the layer whose output is the map: the last stage when it holds parameters
            stage = "_layer" if _has_parameters(getattr(model, "_layer", None)) else None
    if stage:
        plan["backbone_last"] = [stage]
    else:
        notes["backbone_last"] = ("the layer the map is read from holds no parameters (split the model at the "
                                  "stage itself, e.g. layer='layer4')" if kind == "module"
                                  else "the backbone holds no parameters")
    return plan, notes


def randomized_copy(model: nn.Module, names: Sequence[str], seed: int = 0) -> tuple[nn.Module, list[str]]:
    """A deep copy of ``model`` with the named modules re-initialized (see the module docstring).

    Returns:
        (the copy, in eval mode; names of the parameters of those modules that no
        ``reset_parameters()`` covers and which keep their trained values).
    """
    twin = copy.deepcopy(model)
    twin.eval()
    devices = sorted({p.device.index or 0 for p in twin.parameters() if p.device.type == "cuda"})
    covered: set[int] = set()
    untouched: list[str] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        for name in names:
            module = twin.get_submodule(name)
            for sub in module.modules():
                if callable(getattr(sub, "reset_parameters", None)):
                    sub.reset_parameters()
                    covered.update(id(p) for p in sub.parameters(recurse=False))
    for name in names:
        for pname, p in twin.get_submodule(name).named_parameters():
            if id(p) not in covered:
                untouched.append(f"{name}.{pname}")
    return twin, untouched


# -- the maps -----------------------------------------------------------------------------


def _maps(model: Any, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
          names: Sequence[str], external: Mapping[str, ExternalMap]) -> dict[str, torch.Tensor]:
    """Every requested map [B, N] (float64, CPU) and ``predicted`` [B], in fixed-size chunks."""
    from ersm_eval.api import tokens_from_maps  # api imports the evaluators; import it late

    def one(x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = model.forward_features(x)
        scores = model.token_scores(features)
        gated = model.gate(features)
        logits = model.forward_head(model.pool(gated))
        out = {"predicted": logits.argmax(1)}
        for name in ("keep", "energy"):
            if name in names and name in scores:
                out[name] = scores[name]
        if "cam" in names:
            out["gated"] = gated
        return out

    with torch.no_grad():
        out = fixed_chunks(one, images)
    if "cam" in names:
        target = out["predicted"] if targets is None else targets.to(images.device)
        out["cam"] = cam_scores(model, out.pop("gated"), target)[0]
    grid = tuple(model.grid)
    for name, fn in external.items():
        out[name] = tokens_from_maps(torch.as_tensor(fn(model, images, labels)).detach(), grid, name)
    return {k: v.detach().cpu().double() if k != "predicted" else v.detach().cpu() for k, v in out.items()}


def map_spearman(original: Any, recomputed: Any) -> np.ndarray:
    """Per-image Spearman correlation [n] of two maps [n, N] (average ranks for ties; NaN for a constant map)."""
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(recomputed, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"maps must both be [n, N], got {a.shape} and {b.shape}")
    return rank_pearson(rankdata(a, axis=1), rankdata(b, axis=1))


def _batches(loader: Iterable[Any], device: torch.device) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    from ersm_eval.api import iterate_loader

    for batch, _ in iterate_loader(loader, device):
        yield batch["image"], batch["label"]


def map_randomization(
    model: Any,
    loader: Iterable[Any],
    maps: Sequence[str] = ("keep", "energy", "cam"),
    seed: int = 0,
    n_boot: int = 1000,
    boot_seed: int = 0,
    scores: Mapping[str, ExternalMap] | None = None,
    checkpoint: str = "",
    steps: Sequence[str] = RANDOMIZATION_STEPS,
) -> pd.DataFrame:
    """The randomization check of a model's maps, one row per (map, step).

    Args:
        model: an ERSM model or a wrapped model (:func:`ersm_eval.adapter.wrap`); left untouched.
        loader: batches as :func:`ersm_eval.api.iterate_loader` reads them (no shuffling).
        maps: model maps to check: ``keep``, ``energy``, ``cam`` (those the model lacks are skipped with a note).
        seed: seed of the re-initialization.
        n_boot: bootstrap resamples of the interval over images.
        boot_seed: seed of the resamples.
        scores: external maps, name → callable (model, images, labels) → [B, h, w] or [B, H, W],
            recomputed on each randomized copy.
        checkpoint: value of the ``checkpoint`` column.
        steps: the cumulative steps, in order (a subset of :data:`RANDOMIZATION_STEPS`; ``none``
            adds the un-randomized model itself as a reference row, correlation 1 by construction).

    Returns:
        A DataFrame with :data:`RANDOMIZATION_COLUMNS`; ``attrs["notes"]`` lists what was skipped and
        the parameters no ``reset_parameters()`` covered.
    """
    plan, skipped = randomization_plan(model)  # refuses a model that is not split into map → pool → head
    external = dict(scores or {})
    unknown = [m for m in maps if m not in OWN_STEP]
    if unknown:
        raise ValueError(f"unknown map{'s' if len(unknown) > 1 else ''} {unknown}; model maps are "
                         f"{', '.join(OWN_STEP)} (pass others as scores= callables)")
    bad = [s for s in steps if s not in RANDOMIZATION_STEPS + ("none",)]
    if bad or list(dict.fromkeys(steps)) != list(steps):
        valid = ", ".join(("none",) + RANDOMIZATION_STEPS)
        raise ValueError(f"steps must be distinct names from {valid}, got {list(steps)}")
    clash = [n for n in external if n in OWN_STEP or n == "predicted"]
    if clash:
        raise ValueError(f"external map names {clash} clash with the model's own maps; rename them")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}")
    notes: list[str] = []
    has = {"keep": bool(getattr(model, "has_gate", False)), "energy": bool(getattr(model, "has_energy", False)),
           "cam": True}
    names = [m for m in maps if has[m]]
    notes += [f"{m}: skipped, the model has no {m} map" for m in maps if not has[m]]
    twins: list[tuple[str, nn.Module]] = []  # one randomized copy per step, built before the images stream
    cumulative: list[str] = []
    for step in steps:
        if step != "none":
            if step in skipped:
                notes.append(f"{step}: skipped, {skipped[step]}")
                continue
            cumulative += plan[step]
        twin, untouched = randomized_copy(model, cumulative, seed)
        twins.append((step, twin))
        if untouched:
            notes.append(f"{step}: parameters without reset_parameters() keep their trained values: "
                         f"{', '.join(untouched)}")
    checked = list(names) + list(external)
    if not checked:
        raise ValueError(f"none of the maps {list(maps)} exists for this model ({'; '.join(notes)}); "
                         "pass external maps as scores=")
    rho: dict[tuple[str, str], list[np.ndarray]] = {(step, name): [] for step, _ in twins for name in checked}
    was_training = model.training
    model.eval()
    n_seen = 0
    try:
        for images, labels in _batches(loader, next(model.parameters()).device):
            n_seen += len(labels)
            original = _maps(model, images, labels, None, names, external)
            for step, twin in twins:
                recomputed = _maps(twin, images, labels, original["predicted"], names, external)
                for name in checked:
                    rho[step, name].append(map_spearman(original[name].numpy(), recomputed[name].numpy()))
    finally:
        model.train(was_training)
    if n_seen == 0:
        raise ValueError("the loader gave no images")
    rows = [_row(checkpoint, name, step, np.concatenate(rho[step, name]), n_boot, boot_seed)
            for step, _ in twins for name in checked]
    table = pd.DataFrame(rows, columns=list(RANDOMIZATION_COLUMNS))
    table["n_images"] = table["n_images"].astype("Int64")
    table.attrs["notes"] = list(dict.fromkeys(notes))
    return table


def _row(checkpoint: str, name: str, step: str, rho: np.ndarray, n_boot: int, boot_seed: int) -> dict[str, Any]:
    values = rho[np.isfinite(rho)]
    if len(values) == 0:
        return {"checkpoint": checkpoint, "map": name, "randomized": step, "n_images": 0,
                "spearman": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    low, high = bootstrap_mean_ci(values, weights=bootstrap_weights(len(values), n_boot, boot_seed))
    return {"checkpoint": checkpoint, "map": name, "randomized": step, "n_images": int(len(values)),
            "spearman": float(values.mean()), "ci_low": float(low), "ci_high": float(high)}
