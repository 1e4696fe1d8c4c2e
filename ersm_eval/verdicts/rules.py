"""The verdict rules and their sentences: chance, deletion, localization, position.

One module decides what the tool may claim, so the console, the HTML report, the
paper tables and ``compare`` never disagree and never re-derive a verdict from
rounded numbers. Each rule is a small pure function of an estimate's interval
(computed with the number, once, by the evaluator); the sentences are built here
from the same fields and renderers only print them.

Rules:

* **Chance test.** The accuracy before any deletion (k = 0) gets a Wilson 95%
  interval; when it contains chance (1 / number of classes) the model cannot tell
  the classes apart on these images, its deletion curves carry no information and
  every ranking is ``not_testable``.
* **Deletion verdict.** From the paired 95% interval of the symmetric gain
  SG = AUC(LeRF) − AUC(MoRF) (:mod:`ersm_eval.verdicts.orders`): ``supports`` when the
  low end is > 0, ``contradicts`` when the high end is < 0, otherwise
  ``indistinguishable``.
* **One order against random.** From the paired 95% interval of ΔAUC (one order's
  area under the per-image correctness curve minus random's): ``above_random`` when
  the low end is > 0, ``below_random`` when the high end is < 0, otherwise (an
  interval touching or containing 0, or no interval at all) ``indistinguishable``
  (:func:`deletion_verdict`; studies use it). Sentences name the order it concerns.
* **Step counts.** A step counts as above (below) random only when its paired
  interval lies strictly above (below) 0; equal accuracies are ties, never wins.
* **Localization verdict.** A map localizes the object only when the low end of the
  paired interval of its excess over the better trivial baseline (uniform or
  centre map) is > 0; the baselines themselves get ``baseline``.
* **Uninformative boxes.** When the object covers at least 80% of the image in more
  than half of the images, localization figures cannot separate maps.
* **Position.** The energy ranking follows position when the per-image Spearman
  correlation of the energy with closeness to the grid centre, or with the token's
  number of neighbours, is at least 0.5 in absolute value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ersm_core.errors import DatasetError
from ersm_eval.stats import wilson_interval

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DELETION_VERDICTS",
    "RANDOM_VERDICTS",
    "LOCALIZATION_VERDICTS",
    "POSITION_THRESHOLD",
    "LARGE_OBJECT_FRACTION",
    "ChanceTest",
    "chance_test",
    "deletion_verdict",
    "step_counts",
    "localization_verdict",
    "boxes_uninformative",
    "follows_position",
    "chance_sentence",
    "accuracy_sentence",
    "deletion_sentence",
    "localization_sentence",
    "uninformative_boxes_sentence",
    "position_sentence",
]

DELETION_VERDICTS = ("supports", "contradicts", "indistinguishable", "not_testable")  # of the symmetric gain
RANDOM_VERDICTS = ("above_random", "below_random", "indistinguishable", "not_testable")  # one order vs random
LOCALIZATION_VERDICTS = ("localizes", "does_not_localize", "baseline")  # "baseline": rows of the uniform/center maps
POSITION_THRESHOLD = 0.5  # |Spearman| of energy with a position score at which the ranking "follows position"
LARGE_OBJECT_FRACTION = 0.8  # object area fraction from which a box says nothing about localization



def _finite(value: Any) -> bool:
    """True for a real, finite number (None, NaN, pandas NA and strings are not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _num(value: Any) -> float:
    return float(value) if _finite(value) else float("nan")


# -- the rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChanceTest:
    """The accuracy before any deletion (k = 0) against chance, 1 / number of classes."""

    accuracy: float  # fraction of images classified correctly at k = 0
    ci_low: float  # Wilson 95% interval of that accuracy
    ci_high: float
    chance: float  # 1 / n_classes
    n_images: int  # images evaluated
    n_classes: int  # classes of the model's head

    @property
    def at_chance(self) -> bool:
        """True when the interval contains chance (or there is no interval): nothing can be concluded."""
        if not (_finite(self.ci_low) and _finite(self.ci_high)):
            return True
        return self.ci_low <= self.chance <= self.ci_high

    def as_dict(self) -> dict[str, Any]:
        """Plain values for summary.json (``at_chance`` included)."""
        return {
            "accuracy": self.accuracy, "ci_low": self.ci_low, "ci_high": self.ci_high, "chance": self.chance,
            "n_images": self.n_images, "n_classes": self.n_classes, "at_chance": self.at_chance,
        }


def chance_test(n_correct: int, n_images: int, n_classes: int) -> ChanceTest:
    """Test the k = 0 accuracy against chance with a Wilson 95% interval.

    Args:
        n_correct: images classified correctly before any deletion.
        n_images: images evaluated (0 gives a NaN interval, which is at chance).
        n_classes: classes of the model (chance = 1 / n_classes).

    Raises:
        ValueError: on a negative count, more correct images than images, or fewer than 2 classes.
    """
    n_correct, n_images, n_classes = int(n_correct), int(n_images), int(n_classes)
    if n_images < 0 or n_correct < 0 or n_correct > n_images:
        raise ValueError(f"chance test needs 0 <= n_correct <= n_images, got {n_correct} of {n_images}")
    if n_classes < 2:
        raise ValueError(f"chance test needs at least 2 classes, got {n_classes}")
    low, high = wilson_interval(n_correct, n_images)
    accuracy = n_correct / n_images if n_images else float("nan")
    return ChanceTest(float(accuracy), float(low), float(high), 1.0 / n_classes, n_images, n_classes)


def deletion_verdict(ci_low: float, ci_high: float, at_chance: bool) -> str:
    """The verdict of one deletion order from the 95% interval of its ΔAUC to random.

    ``not_testable`` at chance; ``above_random`` when ci_low > 0; ``below_random`` when
    ci_high < 0; otherwise (an interval touching or containing 0, or a NaN one)
    ``indistinguishable``.
    """
    if at_chance:
        return "not_testable"
    low, high = _num(ci_low), _num(ci_high)
    if low > 0:  # NaN compares False
        return "above_random"
    if high < 0:
        return "below_random"
    return "indistinguishable"


def step_counts(ci_low, ci_high) -> tuple[int, int, int]:
    """(steps whose paired interval is > 0, steps whose interval is < 0, all steps).

    An interval touching 0 counts for neither side, so equal accuracies (a
    difference of 0 on every image, interval [0, 0]) are ties, never wins; NaN
    intervals count for neither.
    """
    low = np.asarray(ci_low, dtype=np.float64).ravel()
    high = np.asarray(ci_high, dtype=np.float64).ravel()
    if low.shape != high.shape:
        raise ValueError(f"ci_low and ci_high differ in length ({low.size} vs {high.size})")
    with np.errstate(invalid="ignore"):
        return int((low > 0).sum()), int((high < 0).sum()), int(low.size)


def localization_verdict(excess_ci_low: float, is_baseline: bool = False) -> str:
    """``localizes`` iff the excess over the better baseline has its interval's low end > 0;
    ``baseline`` for the baseline maps themselves; else ``does_not_localize``."""
    if is_baseline:
        return "baseline"
    return "localizes" if _num(excess_ci_low) > 0 else "does_not_localize"


def boxes_uninformative(object_area_fractions, threshold: float = LARGE_OBJECT_FRACTION) -> bool:
    """True when more than half of the images have an object covering ≥ ``threshold`` of the image."""
    fractions = np.asarray(object_area_fractions, dtype=np.float64).ravel()
    fractions = fractions[np.isfinite(fractions)]
    if fractions.size == 0:
        return False
    return bool((fractions >= threshold).mean() > 0.5)


def follows_position(spearman_center: float, spearman_neighbours: float, threshold: float = POSITION_THRESHOLD) -> bool:
    """True when either |correlation| ≥ ``threshold`` (NaN correlations are ignored)."""
    return any(_finite(v) and abs(float(v)) >= threshold for v in (spearman_center, spearman_neighbours))


# -- the words ---------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if _finite(value) else "n/a"


def _signed(value: Any, digits: int = 3) -> str:
    return f"{float(value):+.{digits}f}" if _finite(value) else "n/a"


def _plain(value: Any) -> str:
    return f"{float(value):.3f}" if _finite(value) else "n/a"


def _pts(value: Any) -> str:
    return f"{100 * float(value):+.1f}" if _finite(value) else "n/a"


def _interval(low: Any, high: Any, fmt=_signed) -> str:
    if not (_finite(low) and _finite(high)):
        return "no interval"
    return f"95% CI {fmt(low)} to {fmt(high)}"


def _int(value: Any) -> int | None:
    return int(value) if _finite(value) else None


def _p(value: Any) -> str:
    if not _finite(value):
        return ""
    v = float(value)
    return f", p = {v:.3f}" if v >= 0.001 else ", p < 0.001"


def chance_sentence(test: ChanceTest, label: str) -> str:
    """One sentence on the k = 0 accuracy against chance."""
    who = f"{label}: " if label else ""
    acc = (f"accuracy before any deletion is {_pct(test.accuracy)} on {test.n_images} images "
           f"({_interval(test.ci_low, test.ci_high, _pct)})")
    chance = f"chance ({_pct(test.chance)}, 1 of {test.n_classes} classes)"
    if test.at_chance:
        return (f"{who}{acc} and {chance}: the model is at chance on these images, so its deletion curves "
                "carry no information and no ranking can be judged.")
    if test.ci_high < test.chance:
        return (f"{who}{acc}, below {chance}: the model is systematically wrong on these images; "
                "read its deletion curves with care.")
    return f"{who}{acc}, above {chance}: the deletion curves can be compared."


def accuracy_sentence(test: ChanceTest, label: str, train_spurious: float | None = None) -> str:
    """One sentence on the model's own test accuracy (as trained, with its gate), against chance.

    ``train_spurious``: the probability with which the training images' background matched
    the class (the synthetic data's spurious context), when the checkpoint records one; the
    sentence then says that the test backgrounds are independent of the class.
    """
    who = f"{label}: " if label else ""
    acc = (f"test accuracy of the model as trained is {_pct(test.accuracy)} on {test.n_images} images "
           f"({_interval(test.ci_low, test.ci_high, _pct)}; chance {_pct(test.chance)})")
    shift = ""
    if train_spurious is not None and train_spurious > 0:
        shift = (f", trained on images whose background matched the class with probability {train_spurious:g} "
                 "and tested on backgrounds independent of the class")
    if test.at_chance:
        return f"{who}{acc}{shift}: the model is at chance, so none of its results is a finding."
    return f"{who}{acc}{shift}."


def deletion_sentence(row: Mapping, test: ChanceTest | None, label: str) -> str:
    """What a ranking's row of deletion_summary.csv says, headed by its symmetric gain and verdict.

    The verdict is the row's ``verdict`` (the evaluator's, computed once from the
    unrounded SG interval); a ``test`` at chance overrides it with ``not_testable``.
    Each order's ΔAUC against random deletion follows, naming the order, then the
    LeRF order's per-step gaps as secondary figures.
    """
    from ersm_eval.verdicts.orders import (gain_from_row, order_gap_sentence, order_sentence, order_verdict,
                                           order_words, position_gain_sentence)

    who = f"{label}: " if label else ""
    ranking = str(row.get("ranking", "?"))
    at_chance = bool(test is not None and test.at_chance) or row.get("verdict") == "not_testable"
    if ranking == "random":
        return f"{who}random is the reference the other rankings are compared with; it has one order and no symmetric gain."
    n_images = row.get("n_images") if _int(row.get("n_images")) is not None else "?"
    text = order_sentence(ranking, gain_from_row(row, "sg", n_images), at_chance, label).rstrip(".")
    if order_verdict(row.get("sg_ci_low"), row.get("sg_ci_high"), at_chance) == "not_testable":
        return text + "."
    for order in ("lerf", "morf"):
        if _finite(row.get(f"auc_diff_{order}")):
            text += "; " + order_gap_sentence(ranking, order, row).rstrip(".")
    center = gain_from_row(row, "sg_minus_center", n_images)
    if center is not None:
        text += "; " + position_gain_sentence(ranking, center).rstrip(".")
    above, below, total = (_int(row.get(c)) for c in ("steps_above_random", "steps_below_random", "n_steps"))
    lerf = order_words(ranking, "lerf")
    if above is not None and below is not None:
        of = f" of {total}" if total is not None else ""
        text += (f"; {lerf} is significantly more accurate than random deletion at {above}{of} steps "
                 f"and less accurate at {below}")
    gap_k, min_k = _int(row.get("max_gap_k")), _int(row.get("min_gap_k"))
    if _finite(row.get("max_gap_to_random")) and _finite(row.get("min_gap_to_random")):
        text += (f"; its per-step gap to random deletion runs from {_pts(row.get('min_gap_to_random'))} points "
                 f"at k={min_k} ({_interval(row.get('min_gap_ci_low'), row.get('min_gap_ci_high'), _pts)}) to "
                 f"{_pts(row.get('max_gap_to_random'))} points at k={gap_k} "
                 f"({_interval(row.get('max_gap_ci_low'), row.get('max_gap_ci_high'), _pts)})")
    return text + "."


def localization_sentence(row: Mapping) -> str:
    """What a row of localization.csv says: the value, and for a real map its excess over the better baseline."""
    name = str(row.get("map", "?"))
    metric = str(row.get("metric", "?"))
    head = f"{name} map, {metric}: {_plain(row.get('value'))} ({_interval(row.get('ci_low'), row.get('ci_high'), _plain)})"
    verdict = row.get("verdict")
    if verdict == "baseline":
        return f"{head}; a trivial baseline, shown for reference."
    if verdict not in LOCALIZATION_VERDICTS:
        verdict = localization_verdict(row.get("excess_ci_low"))
    excess = (f"excess over the better baseline {_signed(row.get('excess'))} "
              f"({_interval(row.get('excess_ci_low'), row.get('excess_ci_high'))})")
    words = ("it localizes the object" if verdict == "localizes"
             else "it does not localize the object better than a trivial map")
    return f"{head}; {excess}: {words}."


def uninformative_boxes_sentence(fraction_large: float) -> str:
    """The warning printed when the objects fill most images."""
    return (f"The object covers at least {100 * LARGE_OBJECT_FRACTION:.0f}% of the image in {_pct(fraction_large)} "
            "of the images: a map that covers everything scores as well as one that finds the object, so the "
            "localization figures here are uninformative.")


def position_sentence(spearman_center: float, spearman_neighbours: float, pairwise_share: float) -> str:
    """What the energy diagnostics say: does the energy ranking follow position rather than content?"""
    corr = (f"per-image Spearman correlation of the energy with closeness to the grid centre "
            f"{_signed(spearman_center, 2)} and with the number of neighbours {_signed(spearman_neighbours, 2)}")
    share = (f"; the pairwise term carries {_pct(pairwise_share)} of the energy"
             if _finite(pairwise_share) else "")
    if follows_position(spearman_center, spearman_neighbours):
        return (f"Warning: the energy ranking follows position, not content ({corr}, at least "
                f"{POSITION_THRESHOLD:.1f} in absolute value{share}).")
    return f"The energy ranking does not follow position ({corr}{share})."
