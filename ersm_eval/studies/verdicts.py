"""Verdicts of groups: the rules that turn a group's interval into words, and the words.

A group's verdict comes from its two-level interval (over seeds and images), by the
same rules a single checkpoint's verdict comes from its image-level interval:

* ``accuracy`` against chance (1 / number of classes): ``above_chance`` when the low
  end is above chance, ``below_chance`` when the high end is below it, else
  ``at_chance`` (a missing interval is at chance).
* ``<ranking>_auc_diff`` (ΔAUC to random deletion): ``above_random`` /
  ``below_random`` / ``indistinguishable``, ``not_testable`` when the model is at chance
  (:func:`ersm_eval.verdicts.deletion_verdict`).
* ``<ranking>_sg`` (symmetric gain, least- minus most-relevant-first area): ``supports``
  when the interval lies above 0, ``contradicts`` below 0, else ``indistinguishable``;
  ``not_testable`` at chance.
* ``localization_excess`` (excess over the better trivial map): ``localizes`` when the
  low end is above 0, else ``does_not_localize``
  (:func:`ersm_eval.verdicts.localization_verdict`).
* Every other metric (``mean_keep``, ``loss``, ...) describes and gets ``no_verdict``.

"k of n seeds agree" counts the seeds whose own image-level interval alone gives the
group's verdict. With one seed the group interval is that seed's image-level interval
and every sentence says training variance was not measured.
"""

from __future__ import annotations

from typing import Any, Mapping

from ersm_eval.verdicts import deletion_verdict, localization_verdict
from ersm_eval.verdicts.rules import _finite, _num

__all__ = [
    "ACCURACY_VERDICTS",
    "ORDER_VERDICTS",
    "DIFFERENCE_VERDICTS",
    "NO_VERDICT",
    "ONE_SEED_NOTE",
    "metric_kind",
    "accuracy_verdict",
    "order_verdict",
    "group_verdict",
    "difference_verdict",
    "seeds_agreeing",
    "seeds_note",
    "agreement_note",
    "format_value",
    "format_spread",
    "group_sentence",
    "difference_sentence",
]

ACCURACY_VERDICTS = ("above_chance", "below_chance", "at_chance")
ORDER_VERDICTS = ("supports", "contradicts", "indistinguishable", "not_testable")
DIFFERENCE_VERDICTS = ("higher", "lower", "indistinguishable")  # group_a against group_b
NO_VERDICT = "no_verdict"  # a metric no rule judges (mean keep, loss, ...)
ONE_SEED_NOTE = "1 seed: training variance not measured"

_WORDS = {  # {chance} becomes " (10.0%)" when the chance level is known
    "above_chance": "above chance{chance}",
    "below_chance": "below chance{chance}: the model is systematically wrong on these images",
    "at_chance": "cannot tell the model from chance{chance}",
    "above_random": "keeps the model right longer than random deletion does (above random)",
    "below_random": "loses accuracy faster than random deletion does (below random)",
    "supports": "the data support the ranking's order (what it calls unimportant is less needed than what it "
                "calls important)",
    "contradicts": "the data contradict the ranking's order (what it calls unimportant is more needed than what it "
                   "calls important)",
    "not_testable": "cannot be judged: the model is at chance",
    "localizes": "localizes the object better than a trivial map",
    "does_not_localize": "cannot tell it from a trivial map: it does not localize the object better",
}
_INDISTINGUISHABLE = {
    "deletion": "cannot tell the ranking from random deletion",
    "order": "cannot tell whether the ranking's order is right",
}


# -- the rules ---------------------------------------------------------------------------


def metric_kind(metric: str) -> str:
    """Which rule judges a metric: ``accuracy``, ``deletion``, ``order``, ``localization`` or ``descriptive``."""
    metric = str(metric)
    if metric == "accuracy":
        return "accuracy"
    if metric.endswith("_auc_diff"):
        return "deletion"
    if metric.endswith("_sg"):
        return "order"
    if metric == "localization_excess" or metric.endswith("_localization_excess"):
        return "localization"
    return "descriptive"


def accuracy_verdict(ci_low: Any, ci_high: Any, chance: Any) -> str:
    """``above_chance`` / ``below_chance`` / ``at_chance`` from an accuracy interval; no chance level gives
    :data:`NO_VERDICT`, a missing interval ``at_chance``."""
    if not _finite(chance):
        return NO_VERDICT
    low, high = _num(ci_low), _num(ci_high)
    if low > float(chance):
        return "above_chance"
    if high < float(chance):
        return "below_chance"
    return "at_chance"


def order_verdict(ci_low: Any, ci_high: Any, at_chance: bool) -> str:
    """The verdict of a ranking's symmetric gain: ``supports`` above 0, ``contradicts`` below, else
    ``indistinguishable``; ``not_testable`` at chance."""
    if at_chance:
        return "not_testable"
    if _num(ci_low) > 0:
        return "supports"
    if _num(ci_high) < 0:
        return "contradicts"
    return "indistinguishable"


def group_verdict(metric: str, ci_low: Any, ci_high: Any, chance: Any = None, at_chance: bool = False) -> str:
    """The verdict of one metric's interval (a group's two-level one or a seed's own image-level one).

    Args:
        metric: the metric's name (its kind picks the rule, see :func:`metric_kind`).
        ci_low, ci_high: the interval.
        chance: 1 / number of classes, for ``accuracy``.
        at_chance: whether the model's accuracy interval contains chance (deletion and order
            metrics are then ``not_testable``).
    """
    kind = metric_kind(metric)
    if kind == "accuracy":
        return accuracy_verdict(ci_low, ci_high, chance)
    if kind == "deletion":
        return deletion_verdict(ci_low, ci_high, at_chance)
    if kind == "order":
        return order_verdict(ci_low, ci_high, at_chance)
    if kind == "localization":
        return localization_verdict(ci_low)
    return NO_VERDICT


def difference_verdict(ci_low: Any, ci_high: Any) -> str:
    """group_a against group_b: ``higher`` when the difference's interval lies above 0, ``lower`` below, else
    ``indistinguishable``."""
    if _num(ci_low) > 0:
        return "higher"
    if _num(ci_high) < 0:
        return "lower"
    return "indistinguishable"


def seeds_agreeing(verdict: str, seed_verdicts: list[str] | tuple[str, ...]) -> int:
    """How many seeds' own verdicts equal the group's."""
    return sum(1 for v in seed_verdicts if v == verdict)


# -- the words ---------------------------------------------------------------------------


def seeds_note(n_seeds: Any) -> str:
    """``"3 seeds"``, or :data:`ONE_SEED_NOTE` for one seed."""
    n = int(n_seeds) if _finite(n_seeds) else 0
    return ONE_SEED_NOTE if n == 1 else f"{n} seeds"


def agreement_note(agreeing: Any, n_seeds: Any) -> str:
    """``"2 of 3 seeds alone reach this verdict"``; with one seed, :data:`ONE_SEED_NOTE`."""
    n = int(n_seeds) if _finite(n_seeds) else 0
    if n == 1:
        return ONE_SEED_NOTE
    k = int(agreeing) if _finite(agreeing) else 0
    return f"{k} of {n} seeds alone {'reaches' if k == 1 else 'reach'} this verdict"


def format_value(metric: str, value: Any, signed: bool | None = None) -> str:
    """A metric's value as text: accuracy in percent (one decimal, no sign), judged metrics and differences
    signed with three decimals, others with three decimals; "n/a" when missing."""
    if not _finite(value):
        return "n/a"
    if metric_kind(metric) == "accuracy":
        return f"{100 * float(value):{'+' if signed else ''}.1f}"
    if signed is None:
        signed = metric_kind(metric) in ("deletion", "order", "localization")
    return f"{float(value):{'+' if signed else ''}.3f}"


def format_spread(metric: str, std: Any) -> str:
    """A standard deviation over seeds in the metric's unit (percentage points for accuracy), unsigned."""
    return format_value(metric, std, signed=False) if _finite(std) else "n/a"


def _unit(metric: str) -> str:
    return "%" if metric_kind(metric) == "accuracy" else ""


def _interval(metric: str, low: Any, high: Any, signed: bool | None = None, over: str = "two-level ",
              unit: str | None = None) -> str:
    if not (_finite(low) and _finite(high)):
        return "no interval"
    unit = _unit(metric) if unit is None else unit
    return (f"{over}95% CI {format_value(metric, low, signed)}{unit} to "
            f"{format_value(metric, high, signed)}{unit}")


def group_sentence(row: Mapping, chance: Any = None) -> str:
    """What a group_summary.csv row says: mean ± std over seeds, the interval, the verdict and how many seeds agree.

    The verdict is the row's ``verdict`` (computed once from the unrounded interval).
    ``chance`` (1 / number of classes) is named in accuracy sentences when given.
    """
    group, metric = str(row.get("group", "?")), str(row.get("metric", "?"))
    n = int(row["n_seeds"]) if _finite(row.get("n_seeds")) else 0
    unit = _unit(metric)
    value = f"{format_value(metric, row.get('mean'))}{unit}"
    if n > 1:
        spread = "points" if unit else ""
        head = (f"{group}, {metric}: {value} ± {format_spread(metric, row.get('std'))}{' ' + spread if spread else ''} "
                f"over {n} seeds ({_interval(metric, row.get('ci_low'), row.get('ci_high'))})")
    else:
        head = (f"{group}, {metric}: {value} on 1 seed ({_interval(metric, row.get('ci_low'), row.get('ci_high'), over='')} "
                f"over images only; training variance not measured)")
    verdict = str(row.get("verdict", NO_VERDICT))
    kind = metric_kind(metric)
    if verdict not in _WORDS and verdict != "indistinguishable":  # no_verdict: the numbers alone
        return head + "."
    words = _INDISTINGUISHABLE.get(kind, "cannot tell") if verdict == "indistinguishable" else _WORDS[verdict]
    words = words.format(chance=f" ({100 * float(chance):.1f}%)" if _finite(chance) else "")
    tail = f"; {agreement_note(row.get('seeds_agreeing'), n)}" if n > 1 else ""
    return f"{head}: {words}{tail}."


def difference_sentence(row: Mapping) -> str:
    """What a group_differences.csv row says: group_a − group_b with its interval, and which is higher.

    When both groups hold one seed (``n_seeds_a`` and ``n_seeds_b`` are 1, as in a comparison of
    single checkpoints) the interval is over images only, and the sentence says so."""
    a, b, metric = str(row.get("group_a", "?")), str(row.get("group_b", "?")), str(row.get("metric", "?"))
    unit = " points" if metric_kind(metric) == "accuracy" else ""
    single = all(_finite(row.get(k)) and int(row[k]) == 1 for k in ("n_seeds_a", "n_seeds_b"))
    if single:
        interval = _interval(metric, row.get("ci_low"), row.get("ci_high"), True, over="", unit="")
        interval += " over images only; training variance not measured" if interval != "no interval" else ""
    else:
        interval = _interval(metric, row.get("ci_low"), row.get("ci_high"), True, unit="")
    head = f"{a} − {b}, {metric}: {format_value(metric, row.get('diff'), True)}{unit} ({interval})"
    verdict = difference_verdict(row.get("ci_low"), row.get("ci_high"))
    if verdict == "indistinguishable":
        return f"{head}: cannot tell {a} and {b} apart." if single else f"{head}: cannot tell the two groups apart."
    return f"{head}: {a if verdict == 'higher' else b} is higher."
