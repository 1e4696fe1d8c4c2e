"""The deletion evaluator: update → records → compute over one model's batches.

``update`` keeps, per image, the correctness bit and true-class probability for every
curve and k and the deletion orders (never features); ``records`` returns them as numpy
arrays keyed by name with the image axis first (so records of several processes can be
gathered); ``compute`` builds the tables of :mod:`ersm_eval.deletion.tables`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from ersm_core.errors import ConfigError
from ersm_eval.cam import cam_scores, token_values
from ersm_eval.context import check_finite, check_labels
from ersm_eval.deletion.logits import deletion_logits_descending, deletion_steps, input_deletion_logits
from ersm_eval.deletion.settings import DeletionSettings
from ersm_eval.deletion.insertion import insertion_tables
from ersm_eval.deletion.tables import deletion_tables
from ersm_eval.diagnostics import energy_diagnostic_values
from ersm_eval.fills import MASKED_FILL_KINDS, fill, fill_deleted, token_blur_sigma
from ersm_eval.forward import FORWARD_CHUNK
from ersm_eval.orders import orders_from_scores
from ersm_eval.rankings import Ranking, RankingInputs, resolve_rankings
from ersm_eval.records import concat_records
from ersm_eval.verdicts import deletion_verdicts, insertion_verdicts

__all__ = ["DeletionEvaluator"]


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


def _outcomes(logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Correctness (bool) and true-class probability (float32) of logits [B, R, S, K], each [B, R, S]."""
    batch, n_curves, n_steps, _ = logits.shape
    correct = (logits.argmax(-1) == labels[:, None, None]).cpu().numpy()
    log_prob = torch.log_softmax(logits.float(), -1)
    true = log_prob.gather(-1, labels[:, None, None, None].expand(batch, n_curves, n_steps, 1)).squeeze(-1)
    return correct, true.exp().cpu().numpy().astype(np.float32)


# -- the evaluator ---------------------------------------------------------------------


class DeletionEvaluator:
    """Deletion curves of every ranking for one model (see the module docstring).

    Args:
        model: an :class:`~ersm_core.model.ERSMModel` (put in eval mode during updates).
        settings: rankings, seeds, steps, gate mode, level, ...
        rankings: rankings of this evaluation only (name → :class:`~ersm_eval.rankings.Ranking`, e.g.
            external score maps), looked up before the built-in registry.

    Attributes:
        curves: (ranking, order, seed) of every curve: order ``morf``/``lerf`` (seed −1) or ``random``.
        insertion_curves: (ranking, order, seed) of every insertion curve (``settings.insertion``): the
            MoRF order of each scored ranking, random's permutation per seed; empty without insertion.
        steps: the k values, [S].
        skipped: ranking name → why it does not apply to this model.
    """

    def __init__(self, model: Any, settings: DeletionSettings | None = None,
                 rankings: Mapping[str, Ranking] | None = None) -> None:
        self.model = model
        self.settings = settings or DeletionSettings()
        resolved = resolve_rankings(self.settings.rankings, model, rankings)
        self.rankings = resolved.rankings
        self.skipped = resolved.skipped
        self.n_tokens = int(model.n_tokens)
        self.steps = deletion_steps(self.n_tokens, self.settings.steps)
        self.notes = resolved.notes  # old ranking names -> what they now mean
        # every curve: (ranking, order, seed); a scored ranking runs MoRF then LeRF, random one curve per seed
        self._specs = [(r, o, s) for r in self.rankings
                       for o, s in ([("random", s) for s in self.settings.seeds] if r.importance is None
                                    else [("morf", -1), ("lerf", -1)])]
        self.curves: list[tuple[str, str, int]] = [(r.name, o, s) for r, o, s in self._specs]
        # insertion (input level): each scored ranking's MoRF order and random's permutations, put back first
        self._insertion_rows = [c for c, (_, o, _) in enumerate(self.curves) if o != "lerf"]
        self.insertion_curves: list[tuple[str, str, int]] = (
            [self.curves[c] for c in self._insertion_rows] if self.settings.insertion else [])
        self._need_cam = any("cam" in r.needs for r in self.rankings) or self.settings.save_token_scores
        self.diagnose = bool(getattr(model, "has_energy", False))  # energy diagnostics need E^u and E^p
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._parts: list[dict[str, np.ndarray]] = []

    @property
    def n_images(self) -> int:
        """Images added since the last reset."""
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
        orders = torch.stack(self._orders(inputs, device), 1)  # [B, R, N]: both orders inside this fixed chunk
        inserted = None
        if st.level == "feature":
            logits = deletion_logits_descending(model, deletion_map, orders, self.steps, st.rescale,
                                                 st.head_rows, values)
            descending = True
        else:
            sigma = token_blur_sigma(tuple(images.shape[2:]), tuple(model.grid))
            masked, fills = None, None
            if st.fill in MASKED_FILL_KINDS:  # nli: the fill depends on which pixels are deleted
                def masked(rows_images, deleted, rows):
                    return fill_deleted(rows_images, deleted, st.fill, tuple(model.mean), tuple(model.std),
                                        indices[rows.cpu().numpy()], st.fill_seed)
            else:
                fills = fill(images, st.fill, tuple(model.mean), tuple(model.std), indices, st.fill_seed, sigma)
            logits = input_deletion_logits(model, images, fills, orders, self.steps, st.input_chunk, masked)
            descending = False
            if st.insertion:  # start from the blurred image, put back the first k tokens of each order
                blurred = fills if st.fill == "blur" else fill(images, "blur", tuple(model.mean), tuple(model.std),
                                                               sigma=sigma)
                inserted = input_deletion_logits(model, images, blurred, orders[:, self._insertion_rows], self.steps,
                                                 st.input_chunk, insertion=True)
                check_finite(inserted, indices, "insertion logits", count)
        # the model's own logits (k = 0 among them): one pass over the chunk's logits, real images only
        check_finite(logits, indices, "logits", count)
        check_labels(labels, logits.shape[-1], indices, count)
        diag = energy_diagnostic_values(scores, tuple(model.grid)) if self.diagnose else {}
        real = slice(0, count)
        self._store(logits[real], labels[real], indices[real], orders[real],
                    {k: v[real] for k, v in scores.items()}, None if cam is None else cam[real], descending)
        if inserted is not None:
            ins_correct, ins_prob = _outcomes(inserted[real], labels[real])
            self._parts[-1].update(insertion_correct=ins_correct, insertion_true_prob=ins_prob)
        self._parts[-1].update({f"diag_{k}": v[real].astype(np.float64) for k, v in diag.items()})

    def _orders(self, inputs: RankingInputs, device: torch.device) -> list[torch.Tensor]:
        """The deletion order [B, N] of every curve: MoRF and LeRF from each importance score
        (:func:`ersm_eval.orders.orders_from_scores`), random's seeded permutations."""
        both: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        out = []
        for ranking, order, seed in self._specs:
            if ranking.importance is None:
                out.append(ranking.order(inputs, seed).to(device))
                continue
            if ranking.name not in both:
                both[ranking.name] = orders_from_scores(ranking.importance(inputs).to(device))
            out.append(both[ranking.name][0 if order == "morf" else 1])
        return out

    def _store(self, logits, labels, indices, orders, scores, cam, descending=False) -> None:
        self._logit_width = int(logits.shape[-1])
        correct, true = _outcomes(logits, labels)
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
        """Per-image records, image axis first, in update order (``compute`` sorts them).

        Raises:
            DatasetError: no image was added (:func:`ersm_eval.records.no_images_error`).
        """
        return concat_records(self._parts, "deletion")

    # -- compute ------------------------------------------------------------------------
    def compute(self, records: dict[str, np.ndarray] | None = None) -> dict[str, pd.DataFrame]:
        """The tables, keyed by file name (deletion_curves.csv, deletion_summary.csv,
        deletion_tests.csv, ranking_agreement.csv, energy_diagnostics.csv for models with
        energies, insertion_curves.csv and insertion_summary.csv with ``settings.insertion``)
        of ``records`` in any order (default: this evaluator's own)."""
        rec = self.records() if records is None else records
        names = [r.name for r in self.rankings]
        tables = deletion_tables(rec, self.curves, names, self.steps, self.n_tokens, self.n_classes, self.settings)
        if self.settings.insertion:
            tables.update(insertion_tables(rec, self.insertion_curves, names, self.steps, self.n_tokens,
                                           self.n_classes, self.settings))
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
        (see :func:`deletion_verdicts`); with insertion tables also ``insertion``: its verdicts and
        sentences (:func:`~ersm_eval.verdicts.insertion.insertion_verdicts`)."""
        note = None if self.diagnose else (
            "no energy diagnostics: the model has no Energy-Mask Layer energies (only ersm_unary and ersm_full do)"
        )
        found = deletion_verdicts(tables, self.n_classes, self.settings.label, note)
        if "insertion_summary.csv" in tables:
            found["insertion"] = insertion_verdicts(tables, self.n_classes, self.settings.label)
        return found

    def describe(self) -> dict[str, Any]:
        """Plain description for summary.json: settings, curves, steps, skipped rankings."""
        return {
            "settings": asdict(self.settings),
            "rankings": [r.name for r in self.rankings],
            "ranking_descriptions": {r.name: r.description for r in self.rankings},
            "skipped_rankings": dict(self.skipped),
            "ranking_notes": dict(self.notes),
            "curves": [{"ranking": n, "order": o, "seed": s} for n, o, s in self.curves],
            **({"insertion_curves": [{"ranking": n, "order": o, "seed": s} for n, o, s in self.insertion_curves]}
               if self.insertion_curves else {}),
            "k_values": self.steps.tolist(),
            "n_tokens": self.n_tokens,
            "grid": list(self.model.grid),
            "patch_size": int(self.model.config.patch_size),
            "cam": "exact (linear head)" if self.model.head_is_linear
            else "gradient x input (approximate: the head has a norm before its classifier)",
        }
