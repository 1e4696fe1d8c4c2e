"""Token rankings for deletion curves: per image, an order of its N tokens.

The first token of an order is deleted first. Orders are stable: tokens with equal
scores keep the lower token index first. Each ranking is registered in
:data:`RANKINGS` with the per-token score it sorts and the direction; ``random``
draws ``numpy.random.default_rng([seed, dataset_index]).permutation(N)``, so its
orders depend only on the seed and the image, never on batch size, worker count
or number of processes.

| ranking | deleted first |
|---|---|
| ``energy`` | highest E_i |
| ``unary`` | highest u_i (lowest keep probability π_i) |
| ``random`` | a seeded permutation |
| ``magnitude`` | lowest ‖t_i‖₂ |
| ``magnitude_desc`` | highest ‖t_i‖₂ |
| ``cam`` | lowest contribution to the predicted class's logit |
| ``energy_reversed`` | lowest E_i (sanity check: should collapse fastest) |
| ``center`` | the token nearest the grid centre (a trivial, position-only ranking) |
| ``border`` | the token farthest from the grid centre (``center`` reversed) |

``center`` and ``border`` look at nothing but the token's place on the grid: the
Euclidean distance from the token's centre to the grid's centre, ties by lower
token index, and ``border`` is exactly the reverse of that order. A ranking that
does no better than these carries position, not content.
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
]

DEFAULT_RANKINGS = ("energy", "unary", "magnitude", "cam", "center", "border", "random")


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
    description: str  # one line: what is deleted first
    order: Callable[[RankingInputs, int], torch.Tensor]  # (inputs, seed) -> [B, N] int64 order
    needs: tuple[str, ...] = ()  # score keys it reads: token_scores keys, or "cam"
    seeded: bool = False  # one curve per seed (random); otherwise seed is ignored and reported as -1


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
    """A ranking that sorts the per-token score ``key`` (not registered: pass it to an evaluator)."""

    def order(inputs: RankingInputs, seed: int) -> torch.Tensor:
        return stable_order(inputs.score(key), descending)

    return Ranking(name=name, description=description, order=order, needs=(key,))


def register_score_ranking(name: str, key: str, descending: bool, description: str) -> Ranking:
    """Register a built-in ranking that sorts the per-token score ``key``."""
    ranking = score_ranking(name, key, descending, description)
    RANKINGS.register(name)(ranking)
    return ranking


def _random(inputs: RankingInputs, seed: int) -> torch.Tensor:
    return torch.from_numpy(random_orders(inputs.indices, seed, inputs.n_tokens)).to(inputs.device())


def _position(order_of_grid: Callable[[tuple[int, int]], np.ndarray]) -> Callable[[RankingInputs, int], torch.Tensor]:
    def order(inputs: RankingInputs, seed: int) -> torch.Tensor:
        one = torch.from_numpy(order_of_grid(inputs.grid_shape()))
        return one.expand(len(inputs.indices), -1).contiguous().to(inputs.device())

    return order


register_score_ranking("energy", "energy", True, "highest energy E_i first")
register_score_ranking("unary", "unary", True, "highest unary potential u_i (lowest keep probability) first")
RANKINGS.register("random")(
    Ranking("random", "a permutation drawn from default_rng([seed, dataset_index])", _random, (), seeded=True)
)
register_score_ranking("magnitude", "magnitude", False, "lowest token norm first (magnitude pruning)")
register_score_ranking("magnitude_desc", "magnitude", True, "highest token norm first")
register_score_ranking("cam", "cam", False, "lowest contribution to the predicted class's logit first")
register_score_ranking("energy_reversed", "energy", False, "lowest energy first (sanity check)")
RANKINGS.register("center")(Ranking(
    "center", "the token nearest the grid centre first (position only; ties by lower index)", _position(center_order)
))
RANKINGS.register("border")(Ranking(
    "border", "the token farthest from the grid centre first (the center ranking reversed)", _position(border_order)
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


def resolve_rankings(names: Sequence[str], model: Any, extra: Mapping[str, Ranking] | None = None) -> ResolvedRankings:
    """Look up ``names`` in ``extra`` (this evaluation's own rankings, e.g. external score maps),
    then in the registry (unknown ones raise ConfigError listing the valid names), and drop
    those that do not apply to ``model``; raises when none is left."""
    extra = dict(extra or {})
    valid = ", ".join([*RANKINGS.names(), *[n for n in extra if n not in RANKINGS]])
    if not names:
        raise ConfigError(f"no rankings given; valid names: {valid}")
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
    return ResolvedRankings(kept, skipped)
