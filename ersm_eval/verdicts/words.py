"""The words and number formats every renderer shows (console, HTML report, paper tables).

The display words of each verdict, the one number format, and the rules that sum verdicts
up for a model's at-a-glance table. Renderers print these strings and never spell a verdict
themselves.
"""

from __future__ import annotations

from typing import Any

from ersm_eval.verdicts.rules import ChanceTest, _finite, step_counts

# The words and number formats every renderer (console, HTML report, paper tables) shows: the
# display words of each verdict, the one number format, and the rules that sum verdicts up for a
# model's at-a-glance table. Renderers print these strings and never spell a verdict themselves.

__all__ = [
    "NOT_MEASURED",
    "AT_CHANCE",
    "format_number",
    "format_interval",
    "format_estimate",
    "verdict_words",
    "verdict_names",
    "chance_words",
    "chance_test_from_record",
    "localization_summary",
    "zero_words",
]

NOT_MEASURED = "not measured"  # what a renderer shows where a table holds no value or no verdict
AT_CHANCE = "at chance"  # a model whose accuracy interval contains chance (ChanceTest.at_chance)

_VERDICT_DISPLAY = {
    "supports": "supports (least important first outlasts most important first)",
    "contradicts": "contradicts (most important first outlasts least important first)",
    "indistinguishable": "indistinguishable (the two orders cannot be told apart)",
    "not_testable": "not testable (model at chance)",
    "localizes": "localizes",
    "does_not_localize": "does not localize",
    "baseline": "baseline",
}
_STYLES = {"plain": 3, "signed": 3, "percent": 1, "points": 1, "count": 0}


def format_number(value: Any, style: str = "plain", digits: int | None = None) -> str:
    """The one display form of a number: ``"n/a"`` when missing, a hyphen-minus, no negative zero.

    Styles: ``plain`` (0.123), ``signed`` (+0.123), ``percent`` of a fraction (12.3%),
    ``points`` of a fraction difference (+1.2), ``count`` (12). ``digits`` overrides the
    style's decimals (3, 3, 1, 1, 0).

    Raises:
        ValueError: on an unknown style.
    """
    if style not in _STYLES:
        raise ValueError(f"number style must be one of {', '.join(_STYLES)}, got {style!r}")
    if not _finite(value):
        return "n/a"
    places = _STYLES[style] if digits is None else int(digits)
    number = float(value) * (100 if style in ("percent", "points") else 1)
    if round(number, places) == 0:
        number = 0.0
    if style == "count":
        return str(int(round(number)))
    text = f"{number:+.{places}f}" if style in ("signed", "points") else f"{number:.{places}f}"
    return text + "%" if style == "percent" else text


def format_interval(low: Any, high: Any, style: str = "signed", digits: int | None = None) -> str:
    """``"95% CI a to b"`` in :func:`format_number`'s ``style``, or ``"no interval"``."""
    if not (_finite(low) and _finite(high)):
        return "no interval"
    return f"95% CI {format_number(low, style, digits)} to {format_number(high, style, digits)}"


def format_estimate(value: Any, low: Any = None, high: Any = None, style: str = "plain", digits: int | None = None) -> str:
    """A value with its interval in brackets (``"0.123 (95% CI 0.100 to 0.150)"``); the value alone
    when it has no interval, ``"n/a"`` when there is no value."""
    text = format_number(value, style, digits)
    if text == "n/a" or not (_finite(low) and _finite(high)):
        return text
    return f"{text} ({format_interval(low, high, style, digits)})"


def verdict_words(verdict: Any) -> str:
    """Display words of a deletion or localization verdict code; :data:`NOT_MEASURED` for an empty
    or unknown one (a table cell that holds no verdict)."""
    return _VERDICT_DISPLAY.get(str(verdict), NOT_MEASURED) if isinstance(verdict, str) else NOT_MEASURED


def verdict_names() -> tuple[str, ...]:
    """Every verdict code and its display words (insertion's among them): the vocabulary only this
    package may spell."""
    from ersm_eval.verdicts.insertion import display_names

    return tuple(dict.fromkeys([*_VERDICT_DISPLAY, *_VERDICT_DISPLAY.values(), *display_names()]))


def chance_words(test: ChanceTest | None) -> str:
    """``"at chance"``, ``"below chance"`` or ``"above chance"`` for a chance test, by its Wilson
    interval; :data:`NOT_MEASURED` without one."""
    if test is None:
        return NOT_MEASURED
    if test.at_chance:
        return AT_CHANCE
    return "below chance" if test.ci_high < test.chance else "above chance"


def chance_test_from_record(record: Any) -> ChanceTest | None:
    """The :class:`ChanceTest` a summary.json records (:meth:`ChanceTest.as_dict`), or None for no record.

    Raises:
        ValueError: when the record lacks a field or holds a non-number.
    """
    if record is None:
        return None
    try:
        return ChanceTest(*(float(record[k]) for k in ("accuracy", "ci_low", "ci_high", "chance")),
                          int(record["n_images"]), int(record["n_classes"]))
    except (TypeError, ValueError, KeyError, OverflowError):
        raise ValueError(f"the recorded chance test is malformed ({record!r})") from None


def localization_summary(verdicts: Any) -> str:
    """What one map's localization verdicts (one per metric) add up to, for an at-a-glance table.

    Baseline rows and empty cells are left out; ``"localizes on every one of n metrics"``,
    ``"localizes on m of n metrics"`` (also for the one metric of a map measured once), ``"does not localize on any of n metrics"``, or
    :data:`NOT_MEASURED` when no metric has a verdict.
    """
    codes = [v for v in verdicts if v in ("localizes", "does_not_localize")]
    if not codes:
        return NOT_MEASURED
    hits, total = codes.count("localizes"), len(codes)
    noun = "metric" if total == 1 else "metrics"
    if hits == total and total > 1:
        return f"{verdict_words('localizes')} on every one of {total} {noun}"
    if hits == 0:
        return f"{verdict_words('does_not_localize')} on any of {total} {noun}"
    return f"{verdict_words('localizes')} on {hits} of {total} {noun}"


def zero_words(low: Any, high: Any) -> str:
    """Whether a 95% interval of a difference excludes zero: ``"excludes zero"``, ``"includes zero"``,
    or ``"no interval"``; an interval touching zero includes it (as in :func:`step_counts`)."""
    if not (_finite(low) and _finite(high)):
        return "no interval"
    above, below, _ = step_counts([low], [high])
    return "excludes zero" if above or below else "includes zero"
