"""The rule of the two deletion orders and its sentences (MoRF, LeRF, the symmetric gain).

A ranking claims an importance score per token. Deleting what it calls *least*
important first (LeRF) should keep the model right longer than deleting what it
calls *most* important first (MoRF); the symmetric gain SG = AUC(LeRF) − AUC(MoRF),
per image and averaged, measures by how much (:mod:`ersm_eval.orders`). Every
sentence here names the order it speaks of in words a reader cannot invert.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = [
    "ORDER_VERDICTS",
    "ORDER_NAMES",
    "order_verdict",
    "beats_center",
    "order_words",
    "order_sentence",
    "position_gain_sentence",
    "order_gap_sentence",
    "gain_from_row",
]

ORDER_VERDICTS = ("supports", "contradicts", "indistinguishable", "not_testable")
ORDER_NAMES = {"morf": "MoRF", "lerf": "LeRF", "random": "random"}


class _Gain:
    """A row's gain as :func:`order_sentence` reads it (mean, ci_low, ci_high, p_value, n_images)."""

    def __init__(self, mean: Any, ci_low: Any, ci_high: Any, p_value: Any, n_images: Any) -> None:
        self.mean, self.ci_low, self.ci_high, self.p_value, self.n_images = mean, ci_low, ci_high, p_value, n_images


def gain_from_row(row: Mapping, prefix: str = "sg", n_images: Any = None) -> Any:
    """The gain named ``prefix`` of a deletion_summary.csv row (None when the row has no such number)."""
    if not _finite(row.get(prefix)):
        return None
    n = n_images if n_images is not None else row.get("n_images", "?")
    return _Gain(row.get(prefix), row.get(f"{prefix}_ci_low"), row.get(f"{prefix}_ci_high"),
                 row.get(f"{prefix}_p_value"), n)


def order_words(ranking: str, order: str) -> str:
    """How a sentence names one order of a ranking: "deleting what energy calls least important first"."""
    if order == "random":
        return "deleting tokens in a random order"
    which = {"lerf": "least", "morf": "most"}[order]
    return f"deleting what {ranking} calls {which} important first ({ORDER_NAMES[order]})"



_ORDER_WORDS = {
    "supports": "keeps accuracy longer than deleting what it calls most important first (MoRF)",
    "contradicts": "loses accuracy faster than deleting what it calls most important first (MoRF)",
    "indistinguishable": "cannot be told apart from deleting what it calls most important first (MoRF)",
}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def order_verdict(ci_low: float, ci_high: float, at_chance: bool) -> str:
    """The verdict of a ranking from the 95% interval of its symmetric gain.

    ``not_testable`` at chance; ``supports`` when ci_low > 0 (what it calls unimportant
    is less needed than what it calls important); ``contradicts`` when ci_high < 0;
    otherwise (an interval touching or containing 0, or none) ``indistinguishable``.
    """
    if at_chance:
        return "not_testable"
    if _finite(ci_low) and float(ci_low) > 0:
        return "supports"
    if _finite(ci_high) and float(ci_high) < 0:
        return "contradicts"
    return "indistinguishable"


def beats_center(ci_low: float) -> bool:
    """True when the interval of SG − SG(center) lies above 0: the ranking carries more than position."""
    return _finite(ci_low) and float(ci_low) > 0


def _signed(value: Any) -> str:
    return f"{float(value):+.3f}" if _finite(value) else "n/a"


def _interval(low: Any, high: Any) -> str:
    return f"95% CI {_signed(low)} to {_signed(high)}" if _finite(low) and _finite(high) else "no interval"


def _p(value: Any) -> str:
    if not _finite(value):
        return ""
    return f", p = {float(value):.3f}" if float(value) >= 0.001 else ", p < 0.001"


def order_sentence(ranking: str, gain: Any, at_chance: bool, label: str = "") -> str:
    """The sentence a reader cannot invert: which way each order ran, what happened, the verdict.

    e.g. "energy: deleting what energy calls least important first keeps accuracy longer
    than deleting what it calls most important first: supports (symmetric gain +0.120, ...)."
    """
    who = f"{label}: " if label else ""
    if ranking == "random":
        return f"{who}random has one order and no importance to reverse; its symmetric gain is 0 by construction."
    low, high = (gain.ci_low, gain.ci_high) if gain is not None else (float("nan"), float("nan"))
    verdict = order_verdict(low, high, at_chance)
    if verdict == "not_testable":
        return (f"{who}{ranking}: deleting in either order cannot be judged, the model is at chance before any "
                "deletion: not_testable.")
    numbers = ""
    if gain is not None:
        numbers = (f" (symmetric gain {_signed(gain.mean)} ({_interval(gain.ci_low, gain.ci_high)}{_p(gain.p_value)}),"
                   f" {gain.n_images} images)")
    return (f"{who}{ranking}: deleting what {ranking} calls least important first (LeRF) {_ORDER_WORDS[verdict]}: "
            f"{verdict}{numbers}.")


def position_gain_sentence(ranking: str, diff: Any, label: str = "") -> str:
    """Whether a ranking's symmetric gain exceeds the ``center`` ranking's (paired over images)."""
    who = f"{label}: " if label else ""
    numbers = f"SG − SG(center) {_signed(diff.mean)}, {_interval(diff.ci_low, diff.ci_high)}{_p(diff.p_value)}"
    if beats_center(diff.ci_low):
        return (f"{who}{ranking} carries more than position: its symmetric gain exceeds the center ranking's "
                f"({numbers}).")
    return (f"{who}{ranking} is not shown to carry more than position: its symmetric gain does not exceed the "
            f"center ranking's ({numbers}).")


def order_gap_sentence(ranking: str, order: str, row: Mapping, label: str = "") -> str:
    """One order's ΔAUC against random deletion, naming the order (e.g. for the console)."""
    who = f"{label}: " if label else ""
    suffix = f"_{order}"
    value, low, high = (row.get(f"auc_diff{suffix}"), row.get(f"auc_diff{suffix}_ci_low"),
                        row.get(f"auc_diff{suffix}_ci_high"))
    if not _finite(value):
        return f"{who}{order_words(ranking, order)}: not compared with random deletion."
    if _finite(low) and float(low) > 0:
        how = "keeps the model right longer than deleting in a random order"
    elif _finite(high) and float(high) < 0:
        how = "loses accuracy faster than deleting in a random order"
    else:
        how = "cannot be told apart from deleting in a random order"
    return (f"{who}{order_words(ranking, order)} {how} (ΔAUC {_signed(value)} ({_interval(low, high)}"
            f"{_p(row.get(f'auc_diff{suffix}_p_value'))})).")
