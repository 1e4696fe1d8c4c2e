"""Token rankings for deletion curves: per image, an importance score s_i of its N tokens.

Every ranking but ``random`` claims an *importance score* s_i per token (higher =
more important to the prediction, as the ranking claims) and is evaluated in both
orders (:func:`ersm_eval.orders.orders_from_scores`): MoRF deletes the highest s_i
first, LeRF the lowest; both are stable, ties keep the lower token index first.
``random`` has one order: ``numpy.random.default_rng([seed, dataset_index]).permutation(N)``,
so it depends only on the seed and the image, never on batch size, worker count or
number of processes.

| ranking | s_i (higher = claimed more important) |
|---|---|
| ``energy`` | −E_i |
| ``unary`` | −u_i (the order of the keep probability π_i) |
| ``magnitude`` | ‖t_i‖₂ |
| ``cam`` | the token's contribution to the predicted class's logit |
| ``center`` | −distance of the token centre to the grid centre (position only) |
| an external map | the map's value |
| ``random`` | none: a seeded permutation, the reference |

Older names are kept as aliases of one order of a ranking (:data:`ALIASES`):
``border`` is ``center``, ``magnitude_desc`` is ``magnitude`` and ``energy_reversed``
is ``energy``; asking for one runs its ranking (both orders) with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ersm_core.errors import ConfigError
from ersm_core.registry import Registry

__all__ = [
    "Ranking",
    "RankingInputs",
    "ALIASES",
    "RANKINGS",
    "DEFAULT_RANKINGS",
    "register_score_ranking",
    "score_ranking",
    "stable_order",
    "random_orders",
    "center_order",
    "border_order",
    "skip_reason",
    "resolve_rankings",
    "ResolvedRankings",
    "alias_note",
]

DEFAULT_RANKINGS = ("energy", "unary", "magnitude", "cam", "center", "random")
# old names: (the ranking now holding that order, which order, the note shown when one is asked for)
ALIASES: dict[str, tuple[str, str]] = {
    "border": ("center", "lerf"),
    "magnitude_desc": ("magnitude", "morf"),
    "energy_reversed": ("energy", "morf"),
}


@dataclass
class RankingInputs:
    """What a ranking may read for one batch; every tensor is [B, N]."""

    scores: dict[str, torch.Tensor]  # model.token_scores(features) without "grid"
    indices: np.ndarray  # dataset index of each image, [B] int64
    n_tokens: int  # N
    cam: torch.Tensor | None = None  # contribution to the predicted logit (see ersm_eval.cam.cam_scores)
    grid: tuple[int, int] | None = None  # token grid (h, w), h·w = N; None: a square grid

    def grid_shape(self) -> tuple[int, int]:
        """The token grid (h, w); a square grid when none was given."""
        if self.grid is not None:
            return int(self.grid[0]), int(self.grid[1])
        side = int(round(self.n_tokens**0.5))
        if side * side != self.n_tokens:
            raise RuntimeError(f"bug: {self.n_tokens} tokens are not a square grid and no grid was given")
        return side, side

    def device(self) -> torch.device | str:
        """Where the scores live (orders are returned there)."""
        return next(iter(self.scores.values())).device if self.scores else "cpu"

    def score(self, key: str) -> torch.Tensor:
        """A score by name, ``cam`` included."""
        value = self.cam if key == "cam" else self.scores.get(key)
        if value is None:
            raise RuntimeError(f"bug: ranking input {key!r} was not computed")
        return value


@dataclass(frozen=True)
class Ranking:
    """One registered ranking."""

    name: str  # registry name, used in tables
    description: str  # one line: what s_i is (or, for random, how the order is drawn)
    order: Callable[[RankingInputs, int], torch.Tensor] | None = None  # random: (inputs, seed) -> [B, N] int64
    needs: tuple[str, ...] = ()  # score keys it reads: token_scores keys, or "cam"
    seeded: bool = False  # one curve per seed (random); otherwise seed is ignored and reported as -1
    importance: Callable[[RankingInputs], torch.Tensor] | None = None  # s [B, N]: both orders come from it

    def __post_init__(self) -> None:
        if (self.order is None) == (self.importance is None):
            raise ValueError(f"ranking {self.name!r} needs exactly one of an importance score or an order")


RANKINGS: Registry[Ranking] = Registry("ranking")


def stable_order(score: torch.Tensor, descending: bool) -> torch.Tensor:
    """Order [B, N] of tokens by score; ties keep the lower token index first.

    Descending order sorts the negated score with a stable sort, which keeps equal
    scores (whose negations are equal too) in index order.
    """
    key = -score if descending else score
    return torch.sort(key, dim=1, stable=True).indices


def random_orders(indices: Sequence[int] | np.ndarray, seed: int, n_tokens: int) -> np.ndarray:
    """``default_rng([seed, index]).permutation(N)`` for each dataset index, [B, N] int64."""
    out = np.empty((len(indices), n_tokens), dtype=np.int64)
    for row, index in enumerate(np.asarray(indices, dtype=np.int64).tolist()):
        out[row] = np.random.default_rng([int(seed), int(index)]).permutation(n_tokens)
    return out


def center_order(grid: tuple[int, int]) -> np.ndarray:
    """Tokens of an h×w grid from the nearest to the grid centre to the farthest, [N] int64.

    Distance is Euclidean between token centres (r + ½, c + ½) and the grid centre
    (h/2, w/2), computed exactly in doubled integer coordinates; equal distances keep
    the lower token index (r·w + c) first.
    """
    grid_h, grid_w = int(grid[0]), int(grid[1])
    rows, cols = np.divmod(np.arange(grid_h * grid_w, dtype=np.int64), grid_w)
    d2 = (2 * rows - (grid_h - 1)) ** 2 + (2 * cols - (grid_w - 1)) ** 2  # (2·distance)², integers
    return np.argsort(d2, kind="stable").astype(np.int64)


def border_order(grid: tuple[int, int]) -> np.ndarray:
    """:func:`center_order` reversed: the farthest token from the grid centre first."""
    return center_order(grid)[::-1].copy()


def score_ranking(name: str, key: str, descending: bool, description: str) -> Ranking:
    """A ranking whose importance is the per-token score ``key`` (not registered: pass it to an evaluator).

    ``descending=True``: a high value of ``key`` claims a token *un*important (s_i = −value,
    as for energy); ``False``: a high value claims it important (s_i = value).
    """

    def importance(inputs: RankingInputs) -> torch.Tensor:
        value = inputs.score(key)
        return -value if descending else value

    return Ranking(name=name, description=description, needs=(key,), importance=importance)


def register_score_ranking(name: str, key: str, descending: bool, description: str) -> Ranking:
    """Register a built-in ranking whose importance is the per-token score ``key`` (see :func:`score_ranking`)."""
    ranking = score_ranking(name, key, descending, description)
    RANKINGS.register(name)(ranking)
    return ranking


def _random(inputs: RankingInputs, seed: int) -> torch.Tensor:
    return torch.from_numpy(random_orders(inputs.indices, seed, inputs.n_tokens)).to(inputs.device())


def _center_importance(inputs: RankingInputs) -> torch.Tensor:
    """s_i = −(2·distance)² of the token centre to the grid centre (exact integers), [B, N]."""
    grid_h, grid_w = inputs.grid_shape()
    rows, cols = np.divmod(np.arange(grid_h * grid_w, dtype=np.int64), grid_w)
    d2 = ((2 * rows - (grid_h - 1)) ** 2 + (2 * cols - (grid_w - 1)) ** 2).astype(np.float64)
    return (-torch.from_numpy(d2)).expand(len(inputs.indices), -1).contiguous().to(inputs.device())


register_score_ranking("energy", "energy", True, "s = −E_i: low energy marks what the model needs")
register_score_ranking("unary", "unary", True, "s = −u_i: a high keep probability marks what the model needs")
RANKINGS.register("random")(
    Ranking("random", "a permutation drawn from default_rng([seed, dataset_index])", _random, (), seeded=True)
)
register_score_ranking("magnitude", "magnitude", False, "s = ‖t_i‖₂: large token norms mark what the model needs")
register_score_ranking("cam", "cam", False, "s = the token's contribution to the predicted class's logit")
RANKINGS.register("center")(Ranking(
    "center", "s = −distance to the grid centre (position only; ties by lower index)", importance=_center_importance,
))

_ENERGY_KEYS = ("energy", "unary", "energy_unary", "energy_pairwise")


def skip_reason(ranking: Ranking, model: Any) -> str | None:
    """Why ``ranking`` does not apply to ``model`` (None when it does)."""
    if any(k in _ENERGY_KEYS for k in ranking.needs) and not model.has_energy:
        return (
            f"needs the Energy-Mask Layer's scores, which a {model.config.variant!r} model does not have "
            "(only ersm_unary and ersm_full do)"
        )
    return None


@dataclass
class ResolvedRankings:
    """Rankings that apply to a model, in the requested order, and those skipped with why."""

    rankings: list[Ranking]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # old name -> what it now means


def alias_note(name: str) -> str:
    """What an old ranking name now means (see :data:`ALIASES`)."""
    target, order = ALIASES[name]
    which = "most important" if order == "morf" else "least important"
    return (f"{name!r} is now the {order.upper()} order of {target!r} (deleting what {target} calls {which} "
            f"first); {target} is evaluated in both orders")


def resolve_rankings(names: Sequence[str], model: Any, extra: Mapping[str, Ranking] | None = None) -> ResolvedRankings:
    """Look up ``names`` in ``extra`` (this evaluation's own rankings, e.g. external score maps),
    then in the registry (unknown ones raise ConfigError listing the valid names), and drop
    those that do not apply to ``model``; raises when none is left."""
    extra = dict(extra or {})
    valid = ", ".join([*RANKINGS.names(), *[n for n in extra if n not in RANKINGS]])
    valid += " (old names, now one order of a ranking: " + ", ".join(f"{a} → {t}" for a, (t, _) in ALIASES.items()) + ")"
    if not names:
        raise ConfigError(f"no rankings given; valid names: {valid}")
    notes = {n: alias_note(n) for n in names if n in ALIASES and n not in extra}
    names = [ALIASES[n][0] if n in notes else n for n in names]
    unknown = [n for n in names if n not in RANKINGS and n not in extra]
    if unknown:
        raise ConfigError(
            f"unknown ranking{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid names: {valid}"
        )
    kept: list[Ranking] = []
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(names):
        ranking = extra[name] if name in extra else RANKINGS.get(name)
        reason = skip_reason(ranking, model)
        if reason is None:
            kept.append(ranking)
        else:
            skipped[name] = reason
    if not kept:
        raise ConfigError(
            "none of the requested rankings applies to this model: "
            + "; ".join(f"{n}: {r}" for n, r in skipped.items())
        )
    return ResolvedRankings(kept, skipped, notes)
