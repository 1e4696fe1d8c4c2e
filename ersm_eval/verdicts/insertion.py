"""The rule of input-level insertion and its sentences.

Insertion starts from a blurred image and puts the original pixels back under the
first k tokens of an order. A ranking inserts in its MoRF order (what it calls most
important first); a ranking that knows what the model needs recovers accuracy faster
than inserting in a random order, so its insertion area exceeds random's. The rule has
the shape of the deletion rules (:func:`ersm_eval.verdicts.orders.order_verdict`), read on
the paired 95% interval of ΔAUC = AUC(insertion, MoRF) − AUC(insertion, random):

* ``not_testable``: the model is at chance on the unchanged images (the deletion run's chance test);
* ``supports``: the interval's low end is > 0 (most important first recovers accuracy faster);
* ``contradicts``: the interval's high end is < 0 (random insertion recovers it faster);
* ``indistinguishable``: otherwise (the interval touches or contains 0, or there is none).

Every sentence names the order: "inserting what energy calls most important first ...".
Torch-free, so a report can apply it to insertion_summary.csv.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from ersm_eval.verdicts.orders import order_verdict

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "INSERTION_VERDICTS",
    "insertion_verdict",
    "insertion_words",
    "insertion_verdict_words",
    "display_names",
    "insertion_sentence",
    "insertion_verdicts",
]

INSERTION_VERDICTS = ("supports", "contradicts", "indistinguishable", "not_testable")  # of ΔAUC to random insertion

_HOW = {
    "supports": "recovers accuracy faster than inserting in random order",
    "contradicts": "recovers accuracy more slowly than inserting in random order",
    "indistinguishable": "cannot be told apart from inserting in random order",
}
_DISPLAY = {
    "supports": "supports (most important first recovers accuracy faster than random insertion)",
    "contradicts": "contradicts (random insertion recovers accuracy faster than most important first)",
    "indistinguishable": "indistinguishable (most important first and random insertion cannot be told apart)",
    "not_testable": "not testable (model at chance)",
}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _signed(value: Any) -> str:
    return f"{float(value):+.3f}" if _finite(value) else "n/a"


def insertion_verdict(ci_low: Any, ci_high: Any, at_chance: bool) -> str:
    """The insertion verdict of a ranking from the 95% interval of its ΔAUC to random insertion
    (see the module docstring): the deletion rule's shape, on insertion's interval."""
    return order_verdict(ci_low, ci_high, at_chance)


def insertion_words(ranking: str, order: str = "morf") -> str:
    """How a sentence names an insertion order: "inserting what energy calls most important first (MoRF)"."""
    if order == "random":
        return "inserting tokens in random order"
    if order != "morf":
        raise ValueError(f"insertion runs the MoRF order of a ranking or random's permutation, got {order!r}")
    return f"inserting what {ranking} calls most important first (MoRF)"


def insertion_verdict_words(verdict: Any) -> str:
    """Display words of an insertion verdict code; "not measured" for an empty or unknown one."""
    from ersm_eval.verdicts.words import NOT_MEASURED

    return _DISPLAY.get(verdict, NOT_MEASURED) if isinstance(verdict, str) else NOT_MEASURED


def display_names() -> tuple[str, ...]:
    """Every insertion verdict code and its display words (for :func:`ersm_eval.verdicts.verdict_names`)."""
    return (*_DISPLAY, *_DISPLAY.values())


def insertion_sentence(row: Mapping, at_chance: bool, label: str = "") -> str:
    """What a row of insertion_summary.csv says, naming the order, with the verdict and its numbers.

    e.g. "energy: inserting what energy calls most important first (MoRF) recovers accuracy faster
    than inserting in random order: supports (ΔAUC +0.120 (95% CI +0.050 to +0.200, p = 0.002), 40 images)."
    The verdict is computed here from the row's unrounded interval; ``at_chance`` (or a row whose
    verdict is ``not_testable``) gives ``not_testable``.
    """
    who = f"{label}: " if label else ""
    ranking = str(row.get("ranking", "?"))
    if ranking == "random":
        return (f"{who}random insertion is the reference the other rankings are compared with "
                f"(insertion AUC {_signed(row.get('auc')).lstrip('+')}).")
    at_chance = bool(at_chance) or row.get("verdict") == "not_testable"
    low, high = row.get("auc_diff_ci_low"), row.get("auc_diff_ci_high")
    verdict = insertion_verdict(low, high, at_chance)
    what = insertion_words(ranking)
    if verdict == "not_testable":
        return (f"{who}{ranking}: {what} cannot be judged, the model is at chance before any deletion: "
                "not_testable.")
    n_images = row.get("n_images", "?")
    if _finite(row.get("auc_diff")):
        interval = (f"95% CI {_signed(low)} to {_signed(high)}" if _finite(low) and _finite(high)
                    else "no interval")
        p = row.get("auc_diff_p_value")
        p_text = "" if not _finite(p) else (f", p = {float(p):.3f}" if float(p) >= 0.001 else ", p < 0.001")
        numbers = f" (ΔAUC {_signed(row.get('auc_diff'))} ({interval}{p_text}), {n_images} images)"
    else:
        numbers = " (no random insertion to compare with)"
    return f"{who}{ranking}: {what} {_HOW[verdict]}: {verdict}{numbers}."


def insertion_verdicts(tables: dict[str, pd.DataFrame], n_classes: int, label: str = "") -> dict[str, Any]:
    """What a run's insertion concludes, for summary.json and the console.

    The chance test is the deletion run's (:func:`ersm_eval.verdicts.run.deletion_chance_test`).

    Returns:
        ``{"verdicts": ranking -> verdict, "sentences": ranking -> sentence}``; random is the
        reference and has a sentence but no verdict.
    """
    from ersm_eval.verdicts.run import deletion_chance_test

    at_chance = deletion_chance_test(tables["deletion_curves.csv"], n_classes).at_chance
    verdicts, sentences = {}, {}
    for row in tables["insertion_summary.csv"].to_dict("records"):
        name = str(row["ranking"])
        if name != "random":
            verdicts[name] = insertion_verdict(row.get("auc_diff_ci_low"), row.get("auc_diff_ci_high"), at_chance)
        sentences[name] = insertion_sentence(row, at_chance, label)
    return {"verdicts": verdicts, "sentences": sentences}
