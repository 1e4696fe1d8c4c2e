"""The rule of the randomization check of maps: does a map depend on what its own module learned?

A map (keep, energy, CAM, an external map) is recomputed after re-initializing, cumulatively
from the top, the head, the spatial module and the backbone's last stage
(:func:`ersm_eval.randomization.map_randomization`). A map whose mean per-image Spearman
correlation with the original stays at :data:`DEPENDENCE_THRESHOLD` or above after its own
module is re-initialized does not depend on what that module learned, and the report says so.
Torch-free, so the report can apply it to map_randomization.csv.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["OWN_STEP", "DEPENDENCE_THRESHOLD", "DEPENDENCE_VERDICTS", "own_step", "dependence_verdict",
           "randomization_warning"]

OWN_STEP = {"keep": "spatial", "energy": "spatial", "cam": "head"}  # the module a map should depend on
DEPENDENCE_THRESHOLD = 0.5  # mean Spearman from which a map "does not depend" on its re-initialized module
DEPENDENCE_VERDICTS = ("depends", "does_not_depend", "not_checked")


# -- the rule -----------------------------------------------------------------------------


def own_step(map_name: str, table: Any | None = None) -> str | None:
    """The step that re-initializes a map's own module (:data:`OWN_STEP`); an external map's is
    the last step the table checked it at (None when it has no row)."""
    if map_name in OWN_STEP:
        return OWN_STEP[map_name]
    if table is None:
        return None
    rows = table[(table["map"] == map_name) & (table["randomized"] != "none")]
    return None if rows.empty else str(rows["randomized"].iloc[-1])


def dependence_verdict(spearman: float) -> str:
    """``does_not_depend`` when the mean correlation after the own module's re-initialization is
    ≥ :data:`DEPENDENCE_THRESHOLD`; ``depends`` below; ``not_checked`` without a number."""
    try:
        value = float(spearman)
    except (TypeError, ValueError):
        return "not_checked"
    if not math.isfinite(value):
        return "not_checked"
    return "does_not_depend" if value >= DEPENDENCE_THRESHOLD else "depends"


_MODULE_WORDS = {"head": "the head", "spatial": "the spatial module", "backbone_last": "the backbone's last stage"}


def randomization_warning(table: Any, map_name: str) -> str | None:
    """The warning for a map that does not depend on its own module, else None (also when not checked)."""
    step = own_step(map_name, table)
    if step is None:
        return None
    rows = table[(table["map"] == map_name) & (table["randomized"] == step)]
    if rows.empty:
        return None
    row = rows.iloc[0]
    if dependence_verdict(row["spearman"]) != "does_not_depend":
        return None
    interval = ""
    if all(isinstance(row[c], (int, float)) and math.isfinite(row[c]) for c in ("ci_low", "ci_high")):
        interval = f", 95% CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}"
    label = f"{row['checkpoint']}: " if str(row.get("checkpoint", "")) else ""
    return (f"{label}Warning: the {map_name} map does not depend on what {_MODULE_WORDS[step]} learned: "
            f"after re-initializing {'it' if step == 'head' else 'it and everything above it'}, the map's per-image "
            f"Spearman correlation with the original is still {row['spearman']:+.2f}{interval}, "
            f"at least {DEPENDENCE_THRESHOLD:.1f}.")
