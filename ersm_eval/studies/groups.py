"""Groups of checkpoints: the same experiment trained from different seeds.

A study evaluates several checkpoints on the same images. Checkpoints that are
equal in everything their model config and training provenance record, except the
training seed, are one **group** (one variant trained several times); its numbers
are reported as mean ± std over seeds. The user may instead name the fields that
define a group (``group_by``), and checkpoints equal in those fields are grouped
whatever else differs.

Fields are the model config's keys (``variant``, ``backbone``, ``image_size``, ...)
and the provenance's keys, nested ones joined by dots (``dataset``,
``train_config.lr``, ``selection.subset_seed``, ...); a provenance key that a config
key already names is written ``provenance.<key>``. What describes the run rather than
the experiment (the seed itself, package versions, training history and final
metrics, timings, device, worker count, the path the backbone weights were read from
(their hash stays)) never separates checkpoints and cannot be a group field.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

__all__ = [
    "IGNORED_FIELDS",
    "IGNORED_PREFIXES",
    "DESCRIPTIVE_FIELDS",
    "GROUP_COLUMNS",
    "CheckpointRecord",
    "checkpoint_fields",
    "checkpoint_seed",
    "group_checkpoints",
    "one_group_each",
]

# Provenance fields that describe the run, not the experiment: they never separate checkpoints.
IGNORED_FIELDS = frozenset({
    "seed", "train_config.seed",  # the training seed: what varies inside a group
    "history", "wall_seconds",  # what the run measured and how long it took
    "device", "world_size", "train_config.device", "train_config.workers",  # where and how it ran
    "feature_cache.bytes", "feature_cache.seconds",  # size and time of the cached features
    # where the features were kept and whether an earlier run's were read: the same numbers either way
    "feature_cache.storage", "feature_cache.folder", "feature_cache.reused",
    "weights",  # the path the backbone weights were read from (weights_sha256 names their content)
})
# Provenance fields starting with these never separate checkpoints either.
IGNORED_PREFIXES = ("versions.", "final_")
# Fields groups.csv always shows when the checkpoints record them (the paper tables' row keys).
DESCRIPTIVE_FIELDS = ("variant", "dataset", "backbone", "image_size", "patch_size")
# The first columns of groups.csv; the group's fields follow.
GROUP_COLUMNS = ("group", "checkpoint", "seed")

_MISSING = "<not recorded>"
_LONG_VALUE = 24  # characters from which a value is shown in a group name by a short hash


@dataclass(frozen=True)
class CheckpointRecord:
    """What a study knows of one checkpoint before evaluating it."""

    name: str  # the checkpoint's name in the study's tables (unique)
    config: Mapping[str, Any]  # the model config as the checkpoint stores it
    provenance: Mapping[str, Any]  # the training provenance as the checkpoint stores it


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key in value:
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _ignored(name: str) -> bool:
    return name in IGNORED_FIELDS or name.startswith(IGNORED_PREFIXES)


def checkpoint_fields(config: Mapping[str, Any], provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of one checkpoint that may separate groups, by name (seed and run details left out).

    Args:
        config: the model config (its keys become field names as they are).
        provenance: the training provenance (nested keys joined by dots; a key a config key
            already names gets the prefix ``provenance.``).

    Returns:
        Field name -> recorded value (lists and scalars as recorded; an empty mapping is a value).
    """
    fields: dict[str, Any] = {}
    _flatten(dict(config), "", fields)
    recorded: dict[str, Any] = {}
    _flatten(dict(provenance), "", recorded)
    for name, value in recorded.items():
        if _ignored(name):
            continue
        fields[f"provenance.{name}" if name in fields else name] = value
    return fields


def checkpoint_seed(name: str, provenance: Mapping[str, Any]) -> int | None:
    """The training seed a checkpoint's provenance records (``seed``, else ``train_config.seed``), or None.

    Raises:
        ValueError: when the two places disagree or the seed is not a whole number.
    """
    train_config = provenance.get("train_config")
    found = [provenance.get("seed"), train_config.get("seed") if isinstance(train_config, Mapping) else None]
    found = [s for s in found if s is not None]
    for seed in found:
        if isinstance(seed, bool) or not isinstance(seed, (int, float)) or not math.isfinite(seed) or seed != int(seed):
            raise ValueError(f"checkpoint {name!r} records the training seed {seed!r}, which is not a whole number")
    if len({int(s) for s in found}) > 1:
        raise ValueError(
            f"checkpoint {name!r} records two training seeds ({found[0]} as seed, {found[1]} in train_config); "
            "its provenance is inconsistent"
        )
    return int(found[0]) if found else None


def _canonical(value: Any) -> Any:
    """Numbers as floats (1 and 1.0 are one value), tuples as lists, recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return str(value)


def _key(value: Any) -> str:
    """A canonical text of a recorded value, so equal values compare equal whatever their type or container."""
    if value is _MISSING:
        return _MISSING
    return json.dumps(_canonical(value), sort_keys=True)


def _shown(value: Any) -> Any:
    """A value as a groups.csv cell: scalars as they are, lists and mappings as JSON text."""
    if value is _MISSING:
        return None
    return value if value is None or isinstance(value, (str, int, float, bool)) else _key(value)


def _name_part(value: Any) -> str:
    """A value as recorded, or a short hash of its canonical text when it is long."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > _LONG_VALUE:
        return "#" + hashlib.sha256(_key(value).encode("utf-8")).hexdigest()[:8]
    return text


def _short_names(fields: Sequence[str]) -> dict[str, str]:
    """Each field by its last dotted part when no other field shares it, else in full."""
    last = [f.rsplit(".", 1)[-1] for f in fields]
    return {f: short if last.count(short) == 1 else f for f, short in zip(fields, last)}


def _group_name(values: Mapping[str, Any], naming: Sequence[str]) -> str:
    """``variant`` bare, then ``field=value`` for the other naming fields."""
    shorts = _short_names([f for f in naming if f != "variant"])
    parts = [_name_part(values["variant"])] if "variant" in naming else []
    parts += [f"{shorts[f]}={_name_part(values[f])}" for f in naming if f != "variant"]
    return ", ".join(parts) or "all"


def _naming_fields(distinct: list[tuple], by: list[str], differing: list[str]) -> list[str]:
    """``variant``, then (descriptive fields first) each differing field that tells more groups apart."""
    def parts(chosen: list[str]) -> int:
        return len({tuple(key[by.index(f)] for f in chosen) for key in distinct})

    chosen = ["variant"] if "variant" in by else []
    order = [f for f in DESCRIPTIVE_FIELDS if f in differing] + [f for f in differing if f not in DESCRIPTIVE_FIELDS]
    for field in order:
        if parts(chosen) == len(distinct):
            break
        if field not in chosen and parts([*chosen, field]) > parts(chosen):
            chosen.append(field)
    return chosen


def _shown_in_name(key: tuple, naming: list[str], by: list[str], distinct: list[tuple], by_variant: bool) -> list[str]:
    """The naming fields a group's name shows: with ``by_variant``, the variant and only those naming fields
    that differ among the groups of the same variant (a variant trained one way is named by the variant alone)."""
    if not by_variant or "variant" not in naming:
        return naming
    at = by.index("variant")
    same = [k for k in distinct if k[at] == key[at]]
    return ["variant"] + [f for f in naming if f != "variant" and len({k[by.index(f)] for k in same}) > 1]


def _as_records(checkpoints: Iterable[CheckpointRecord | tuple]) -> list[CheckpointRecord]:
    records = []
    for item in checkpoints:
        if not isinstance(item, CheckpointRecord) and (not isinstance(item, (tuple, list)) or len(item) != 3):
            raise ValueError(f"each checkpoint must be given as (name, config, provenance), got {type(item).__name__}")
        record = item if isinstance(item, CheckpointRecord) else CheckpointRecord(*item)
        if not isinstance(record.config, Mapping) or not isinstance(record.provenance, Mapping):
            raise ValueError(f"checkpoint {record.name!r}: its config and provenance must be mappings")
        records.append(record)
    if not records:
        raise ValueError("a study needs at least one checkpoint, got none")
    names = [str(r.name) for r in records]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"checkpoint names must be unique in a study; repeated: {', '.join(repeated)}")
    return records


def group_checkpoints(
    checkpoints: Iterable[CheckpointRecord | tuple], group_by: Sequence[str] | None = None
) -> pd.DataFrame:
    """Sort checkpoints into groups: the same experiment from different training seeds.

    Args:
        checkpoints: (name, config, provenance) triples or :class:`CheckpointRecord`.
        group_by: field names (see :func:`checkpoint_fields`) whose values define a group;
            None groups by every field except the seed and the run details.

    Returns:
        The groups.csv table: ``group``, ``checkpoint``, ``seed`` (nullable integer), then the
        descriptive fields (:data:`DESCRIPTIVE_FIELDS`, where recorded), then the fields whose
        values differ between groups (or the ``group_by`` fields). Groups are named by the
        variant and as few of the fields that differ between them as tell them apart
        (``"ersm_full, lr=0.01"``; with ``group_by``, by its fields) and sorted by name;
        members by seed, then name.

    Raises:
        ValueError: no checkpoint, repeated names, an unknown ``group_by`` field (the message
            lists the valid ones), a seed recorded twice in one group, or a checkpoint of a
            several-member group that records no seed.
    """
    records = _as_records(checkpoints)
    fields = {str(r.name): checkpoint_fields(r.config, r.provenance) for r in records}
    seeds = {str(r.name): checkpoint_seed(str(r.name), r.provenance) for r in records}
    valid = sorted(set().union(*fields.values()))
    if group_by is not None:
        by = list(dict.fromkeys(str(f) for f in group_by))
        unknown = [f for f in by if f not in valid]
        if unknown or not by:
            what = f"unknown group_by field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}" if unknown \
                else "group_by names no field"
            raise ValueError(f"{what}; valid fields: {', '.join(valid)}")
    else:
        by = valid
    values = {n: {f: fields[n].get(f, _MISSING) for f in valid} for n in fields}
    keys = {n: tuple(_key(values[n][f]) for f in by) for n in fields}
    distinct = sorted(set(keys.values()))
    differing = [f for i, f in enumerate(by) if len({k[i] for k in distinct}) > 1]
    naming = by if group_by is not None else _naming_fields(distinct, by, differing)
    first = {}
    for name in fields:
        first.setdefault(keys[name], name)
    names = {key: _group_name(values[member], _shown_in_name(key, naming, by, distinct, group_by is None))
             for key, member in first.items()}
    _make_unique(names)
    shown = [f for f in DESCRIPTIVE_FIELDS if f in valid]
    shown += [f for f in (differing if group_by is None else by) if f not in shown]
    rows = [{"group": names[keys[name]], "checkpoint": name, "seed": seeds[name],
             **{f: _shown(values[name][f]) for f in shown}} for name in fields]
    table = pd.DataFrame(rows)
    table["seed"] = pd.array([s for s in table["seed"]], dtype="Int64")
    table = table.sort_values(["group", "seed", "checkpoint"], key=_sort_key, na_position="last").reset_index(drop=True)
    _check_seeds(table)
    return table


def _sort_key(column: pd.Series) -> pd.Series:
    return column if column.name == "seed" else column.astype(str)


def _make_unique(names: dict[tuple, str]) -> None:
    """Append " (2)", " (3)", ... to names that two groups would share (values hashed alike)."""
    seen: dict[str, int] = {}
    for key in sorted(names):
        name = names[key]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[key] = f"{name} ({seen[name]})"


def _check_seeds(table: pd.DataFrame) -> None:
    for group, members in table.groupby("group", sort=False):
        if len(members) < 2:
            continue
        unseeded = members.loc[members["seed"].isna(), "checkpoint"].tolist()
        if unseeded:
            raise ValueError(
                f"group {group!r} holds {len(members)} checkpoints but {', '.join(map(repr, unseeded))} records no "
                "training seed, so its runs cannot be told apart; pass group_by fields that separate them"
            )
        repeated = members[members["seed"].duplicated(keep=False)]
        if len(repeated):
            seed = int(repeated["seed"].iloc[0])
            same = repeated.loc[repeated["seed"] == seed, "checkpoint"].tolist()
            raise ValueError(
                f"checkpoints {', '.join(map(repr, same))} of group {group!r} were trained with the same seed {seed} "
                "(the same run twice?); remove the duplicate or pass group_by fields that separate them"
            )


def one_group_each(checkpoints: Iterable[CheckpointRecord | tuple]) -> pd.DataFrame:
    """Every checkpoint its own group, named by the checkpoint, in the order given (a comparison).

    The groups.csv table of :func:`group_checkpoints` (``group``, ``checkpoint``, ``seed``, the
    descriptive fields where recorded); a seed that cannot be read is left empty, as a one-member
    group never needs it to tell its runs apart.

    Raises:
        ValueError: no checkpoint or repeated names.
    """
    records = _as_records(checkpoints)
    fields = {str(r.name): checkpoint_fields(r.config, r.provenance) for r in records}
    shown = [f for f in DESCRIPTIVE_FIELDS if any(f in values for values in fields.values())]
    rows = []
    for record in records:
        name = str(record.name)
        try:
            seed = checkpoint_seed(name, record.provenance)
        except ValueError:
            seed = None
        rows.append({"group": name, "checkpoint": name, "seed": seed,
                     **{f: _shown(fields[name].get(f, _MISSING)) for f in shown}})
    table = pd.DataFrame(rows)
    table["seed"] = pd.array(list(table["seed"]), dtype="Int64")
    return table
