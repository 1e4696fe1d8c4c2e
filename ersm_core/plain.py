"""Values as plain data: the one home of "to plain types" and of the nesting-depth check.

Checkpoints, training state, provenance and JSON sidecars hold only dicts, lists,
strings, numbers, booleans and None. :func:`to_plain` converts what a run produces
(tuples, numpy and torch scalars or arrays, paths, ``str`` subclasses such as
torch's version string) into those types (pandas' NA becomes None); :func:`depth_problem` says, without
recursion, whether data read from a stranger's file nests deeper than allowed.
Neither imports torch or numpy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["to_plain", "depth_problem"]


def to_plain(value: Any) -> Any:
    """``value`` as dicts (string keys), lists, str, int, float, bool and None.

    Tuples become lists; ``str``/``int``/``float`` subclasses (numpy's float64, torch's
    version string) their base type; numpy or torch arrays and scalars their ``tolist()``
    / ``item()``; anything else (paths, enums) its ``str``. Key order is kept.
    """
    if value is None or isinstance(value, bool):
        return value
    if _is_missing(value):  # pandas' NA (and NaT): a missing value, null in JSON
        return None
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0):
        return to_plain(value.tolist())
    if hasattr(value, "item"):
        try:
            return to_plain(value.item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def _is_missing(value: Any) -> bool:
    """pandas' ``NA`` / ``NaT`` singletons, recognized without importing pandas."""
    kind = type(value)
    return kind.__module__.startswith("pandas") and kind.__name__ in ("NAType", "NaTType")


def depth_problem(value: Any, limit: int) -> str | None:
    """"nested more than ``limit`` levels deep" when dicts/lists in ``value`` nest deeper, else None.

    The outermost dict or list is level 1; scalars add no level. Walked with an explicit
    stack, so even a hostile depth cannot exhaust Python's recursion limit.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if level > limit:
                return f"nested more than {limit} levels deep"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return None
