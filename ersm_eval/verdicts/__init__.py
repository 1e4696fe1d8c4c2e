"""Verdicts: every rule that turns a result's numbers into words, and the words.

One package decides what the tool may claim, so the console, the HTML report, the paper
tables and ``compare`` never disagree and never re-derive a verdict from rounded numbers:

* :mod:`~ersm_eval.verdicts.rules`: the rules (chance test, deletion, localization, position) and sentences;
* :mod:`~ersm_eval.verdicts.orders`: the rule of the two deletion orders (MoRF, LeRF, symmetric gain) and its words;
* :mod:`~ersm_eval.verdicts.insertion`: the rule of input-level insertion against random insertion and its words;
* :mod:`~ersm_eval.verdicts.randomization`: whether a map depends on what its own module learned;
* :mod:`~ersm_eval.verdicts.run`: what a deletion run concludes, from its tables;
* :mod:`~ersm_eval.verdicts.words`: the display words and the one number format of every renderer.
"""

from __future__ import annotations

from ersm_eval.verdicts.rules import (  # noqa: F401
    DELETION_VERDICTS,
    RANDOM_VERDICTS,
    LOCALIZATION_VERDICTS,
    POSITION_THRESHOLD,
    LARGE_OBJECT_FRACTION,
    ChanceTest,
    chance_test,
    deletion_verdict,
    step_counts,
    localization_verdict,
    boxes_uninformative,
    follows_position,
    chance_sentence,
    accuracy_sentence,
    deletion_sentence,
    localization_sentence,
    uninformative_boxes_sentence,
    position_sentence,
)
from ersm_eval.verdicts.words import (  # noqa: F401
    NOT_MEASURED,
    AT_CHANCE,
    format_number,
    format_interval,
    format_estimate,
    verdict_words,
    verdict_names,
    chance_words,
    chance_test_from_record,
    localization_summary,
    zero_words,
)
from ersm_eval.verdicts.orders import (  # noqa: F401
    ORDER_VERDICTS,
    ORDER_NAMES,
    order_verdict,
    beats_center,
    order_words,
    order_sentence,
    position_gain_sentence,
    order_gap_sentence,
    gain_from_row,
)
from ersm_eval.verdicts.insertion import (  # noqa: F401
    INSERTION_VERDICTS,
    insertion_verdict,
    insertion_words,
    insertion_verdict_words,
    insertion_sentence,
    insertion_verdicts,
)
from ersm_eval.verdicts.randomization import (  # noqa: F401
    DEPENDENCE_THRESHOLD,
    DEPENDENCE_VERDICTS,
    OWN_STEP,
    dependence_verdict,
    own_step,
    randomization_warning,
)
from ersm_eval.verdicts.run import (  # noqa: F401
    deletion_chance_test,
    deletion_verdicts,
)

from ersm_eval.verdicts import orders as _orders, randomization as _randomization, rules as _rules, run as _run  # noqa: E402
from ersm_eval.verdicts import words as _words  # noqa: E402

__all__ = [*_rules.__all__, *_orders.__all__, "INSERTION_VERDICTS", "insertion_verdict", "insertion_words",
           "insertion_verdict_words", "insertion_sentence", "insertion_verdicts", *_randomization.__all__,
           *_run.__all__, *_words.__all__]
