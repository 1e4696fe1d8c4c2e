"""What an evaluation returns: its tables, a typed summary, and the files it saves.

:class:`EvaluationResult` holds the tables (CSV file name → DataFrame), a
:class:`RunSummary` (written as ``summary.json``) and any arrays saved beside
them (``token_scores.npz``, ``maps.npz``). ``save(folder)`` writes what the
command-line tool writes, so ``ersm-eval report folder`` renders it.

``summary.json`` follows a versioned JSON schema, ``summary_schema.json`` next to
this module (``SUMMARY_SCHEMA_VERSION``). :func:`check_summary` checks a summary
against it with a small built-in checker (the JSON-schema keywords the file uses:
type, required, properties, additionalProperties, items, enum, const, minimum),
and :func:`load_summary` reads one back as a :class:`RunSummary`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ersm_core.plain import depth_problem, to_plain
from ersm_core.errors import ConfigError
from ersm_eval.schema import SUMMARY_JSON

__all__ = [
    "SUMMARY_SCHEMA_VERSION",
    "COMMANDS",
    "ModelInfo",
    "RunSummary",
    "EvaluationResult",
    "summary_schema",
    "check_summary",
    "load_summary",
    "read_json_file",
    "SUMMARY_MAX_BYTES",
    "SUMMARY_MAX_DEPTH",
]

SUMMARY_SCHEMA_VERSION = 2  # bump with every change of summary_schema.json (fields added, renamed or removed)
COMMANDS = ("deletion", "occlusion", "sparsity")


@dataclass(frozen=True)
class ModelInfo:
    """The evaluated model, as the evaluators saw it."""

    kind: str  # 'ersm' (the project's model), 'timm' or 'module' (any nn.Module split at a layer)
    name: str  # ERSM: the backbone; timm: 'timm <architecture>'; else the class name
    variant: str  # ERSM variant (baseline, ersm_full, ...); other models: the same as name
    layer: str  # submodule whose output is the spatial map ('' for ERSM and timm)
    grid: list[int]  # token grid [h, w]
    patch_size: int  # P: tokens are P×P patches of the map
    n_tokens: int  # h · w
    head_is_linear: bool  # logits are affine in the pooled vector (the CAM is exact)
    has_energy: bool  # an Energy-Mask Layer: energy and unary scores exist
    has_gate: bool  # a keep map exists (ERSM, L0)
    mean: list[float]  # input normalization mean ([] when unknown)
    std: list[float]  # input normalization standard deviation ([] when unknown)

    @classmethod
    def of(cls, model: Any) -> "ModelInfo":
        """Describe an ERSM model or a :class:`~ersm_eval.adapter.ModelAdapter` (grid known)."""
        from ersm_eval.adapter import ModelAdapter

        if isinstance(model, ModelAdapter):
            kind, name, variant, layer = model.kind, model.config.variant, model.config.variant, model.layer_name
        else:
            kind, name, variant, layer = "ersm", str(model.config.backbone), str(model.config.variant), ""
        return cls(
            kind=kind, name=name, variant=variant, layer=layer, grid=[int(v) for v in model.grid],
            patch_size=int(model.config.patch_size), n_tokens=int(model.n_tokens),
            head_is_linear=bool(model.head_is_linear), has_energy=bool(model.has_energy),
            has_gate=bool(model.has_gate), mean=[float(v) for v in model.mean], std=[float(v) for v in model.std],
        )


@dataclass
class RunSummary:
    """The typed content of ``summary.json`` (schema: ``summary_schema.json``)."""

    command: str  # 'deletion', 'occlusion' or 'sparsity'
    label: str  # the model's name in the tables' checkpoint column
    n_images: int  # images evaluated
    class_names: list[str]  # class names, by class index
    model: ModelInfo  # what was evaluated
    settings: dict[str, Any]  # the evaluator's settings (DeletionSettings, OcclusionConfig, ...), as plain values
    evaluation: dict[str, Any]  # what the evaluator reports about the run (rankings run and skipped, patterns, maps)
    notes: list[str] = field(default_factory=list)  # what was skipped or approximated, in words
    tables: dict[str, int] = field(default_factory=dict)  # CSV file → data rows written (a truncated file shows)
    files: list[str] = field(default_factory=list)  # other files of the run (token_scores.npz, maps.npz)
    # where model and images came from (empty when a model object and a loader were passed)
    checkpoint: str = ""  # checkpoint file
    checkpoint_sha256: str = ""  # its SHA-256
    config: dict[str, Any] = field(default_factory=dict)  # its ModelConfig
    provenance: dict[str, Any] = field(default_factory=dict)  # the checkpoint's own record of how it was trained
    dataset: dict[str, Any] = field(default_factory=dict)  # the dataset: name, split, transform, options
    subset: dict[str, Any] = field(default_factory=dict)  # the images chosen (--limit, --subset-seed, indices)
    device: str = ""  # device the evaluation ran on
    labels: list[str] = field(default_factory=list)  # several models in one run (occlusion): their labels
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # ... and each one's provenance (keys as above)
    options: dict[str, Any] = field(default_factory=dict)  # the command's options as given ({} from the API)
    skipped_images: list[dict[str, Any]] = field(default_factory=list)  # unreadable images left out: index, error
    cache: dict[str, Any] | None = None  # feature cache used: dir, hits, misses, rebuilt
    # deletion: the chance test and the verdicts (ersm_eval.verdicts), computed with the numbers
    chance_test: dict[str, Any] | None = None  # accuracy before deletion against chance (Wilson interval)
    verdicts: dict[str, str] = field(default_factory=dict)  # ranking → ΔAUC verdict
    verdict_sentences: dict[str, Any] = field(default_factory=dict)  # the same in words
    energy_diagnostics: Any = None  # energy diagnostics, or the sentence why there are none
    world_size: int = 1  # processes that shared the images (torchrun)
    command_line: str = ""  # the command line of a CLI run
    versions: dict[str, str] = field(default_factory=dict)  # package versions
    started: str = ""  # local start time, ISO 8601
    run_seconds: float = 0.0  # wall time of the evaluation
    schema_version: int = SUMMARY_SCHEMA_VERSION  # version of summary_schema.json this follows

    def __post_init__(self) -> None:
        # plain JSON values from the start (tuples → lists, numpy scalars → numbers), so a summary read back equals it
        for f in fields(self):
            if f.name != "model":
                setattr(self, f.name, to_plain(getattr(self, f.name)))

    def describe_source(self, source: dict[str, Any]) -> None:
        """Set the provenance fields (checkpoint, checkpoint_sha256, config, provenance, dataset, subset,
        device, class_names) from a dict with those keys, e.g. ``EvalSetup.describe()``."""
        for key in _SOURCE_KEYS:
            if key in source:
                setattr(self, key, to_plain(source[key]))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what ``summary.json`` holds)."""
        return to_plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSummary":
        """Rebuild from :meth:`to_dict` after checking it against the schema."""
        problems = check_summary(data)
        if problems:
            raise ConfigError(f"summary does not follow summary_schema.json v{SUMMARY_SCHEMA_VERSION}: {problems[0]}")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["model"] = ModelInfo(**data["model"])
        return cls(**values)


_SOURCE_KEYS = ("checkpoint", "checkpoint_sha256", "config", "provenance", "dataset", "subset", "device", "class_names")


# -- the schema -------------------------------------------------------------------------
@lru_cache(maxsize=1)
def summary_schema() -> dict[str, Any]:
    """The JSON schema of ``summary.json`` (the file ``summary_schema.json`` of this package)."""
    text = resources.files("ersm_eval").joinpath("summary_schema.json").read_text(encoding="utf-8")
    return json.loads(text)


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def _check(value: Any, schema: dict[str, Any], path: str, out: list[str]) -> None:
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        ok = any(isinstance(value, _TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool))
                 for k in kinds)
        if not ok:
            out.append(f"{path or 'summary'} should be {' or '.join(kinds)}, got {type(value).__name__}")
            return
    if "const" in schema and value != schema["const"]:
        out.append(f"{path} should be {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path} should be one of {schema['enum']}, got {value!r}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        out.append(f"{path} should be at least {schema['minimum']}, got {value!r}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path or 'summary'} lacks the key {key!r}")
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{path}.{key}" if path else key, out)
            elif schema.get("additionalProperties", True) is False:
                out.append(f"{path or 'summary'} has an unknown key {key!r}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", out)


def check_summary(data: dict[str, Any]) -> list[str]:
    """Problems of ``data`` against ``summary_schema.json`` (empty when it follows the schema)."""
    out: list[str] = []
    _check(data, summary_schema(), "", out)
    return out


SUMMARY_MAX_BYTES = 64 * 1024 * 1024  # a summary.json holds options, provenance and verdicts: kilobytes, not gigabytes
SUMMARY_MAX_DEPTH = 64  # a checkpoint's provenance is at most 32 levels deep, and sits 3 levels down
_MAX_INT = 2 ** 64  # no count, index or seed of a run is larger; larger ones would overflow floats


def _reject_constant(name: str) -> Any:
    if name == "NaN":  # json.dumps writes NaN for a statistic with no value (e.g. an empty interval)
        return float("nan")
    raise ValueError(f"the number {name} is not allowed (ersm-eval writes only finite numbers)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError(f"the integer {text[:20]}... ({len(text)} digits) is out of range")
    value = int(text)
    if abs(value) > _MAX_INT:
        raise ValueError(f"the integer {text} is out of range")
    return value


def read_json_file(path: str | Path, error: type[Exception] = ConfigError, max_bytes: int = SUMMARY_MAX_BYTES,
                   max_depth: int = SUMMARY_MAX_DEPTH) -> dict[str, Any]:
    """A JSON object read from ``path`` defensively; anything else raises ``error`` naming the file.

    The file is at most ``max_bytes`` (checked before it is read) and nests at most ``max_depth``
    levels; Infinity, numbers that overflow a float and integers beyond 64 bits are refused (NaN,
    which ersm-eval writes for a statistic with no value, is read as NaN).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {size} bytes, more than the {max_bytes} a summary may hold; "
                        "the file was not written by ersm-eval or was edited")
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err})") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: more than {max_bytes} bytes, more than a summary may hold")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:
        raise error(f"{path}: not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, bad UTF-8, the number checks above
        detail = " ".join(str(err).split())[:200]
        raise error(f"{path}: not valid JSON ({detail})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object at the top level, found {type(data).__name__}")
    problem = depth_problem(data, max_depth)
    if problem:
        raise error(f"{path}: not a summary written by ersm-eval ({problem})")
    return data


def load_summary(folder: str | Path) -> RunSummary:
    """Read ``summary.json`` of a run folder written by :meth:`EvaluationResult.save`.

    Raises:
        ConfigError: no summary.json, or one that does not follow the schema.
    """
    path = Path(folder) / SUMMARY_JSON
    if not path.is_file():
        raise ConfigError(f"{path} not found: is {folder} a folder written by ersm-eval?")
    data = read_json_file(path, ConfigError)
    try:
        return RunSummary.from_dict(data)
    except (TypeError, ValueError) as err:  # ConfigError included; a field ModelInfo does not take
        if isinstance(err, ConfigError):
            raise ConfigError(f"{path}: {err}") from None
        raise ConfigError(f"{path}: summary does not follow summary_schema.json ({err})") from None


# -- the result -----------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    """Tables, summary and extra arrays of one evaluation.

    Attributes:
        tables: CSV file name → DataFrame (columns as in :data:`ersm_eval.schema.TABLES`).
        summary: the typed summary (``summary.json``).
        arrays: npz file name → arrays saved beside the tables (``token_scores.npz``, ``maps.npz``).
        records: the evaluator's per-image records (numpy arrays, image axis first), for further analysis.
    """

    tables: dict[str, pd.DataFrame]
    summary: RunSummary
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    records: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> pd.DataFrame:
        """A table by file name, e.g. ``result["deletion_summary.csv"]``."""
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r}; this result has: {', '.join(self.tables)}") from None

    def save(self, folder: str | Path, overwrite: bool = False, after: Callable[[Path], None] | None = None) -> Path:
        """Write the tables (CSV), ``summary.json`` and the npz files into ``folder``.

        The folder is written under a temporary name and renamed when complete; an
        existing non-empty folder is replaced only with ``overwrite`` (and only one
        ersm-eval wrote). Render it with ``ersm-eval report FOLDER``. ``after`` is called with the
        temporary folder once everything is written, before the rename (the CLI writes report.html).

        Returns:
            The folder.
        """
        from ersm_eval.output import output_folder, write_json, write_table

        summary = self.summary
        summary.tables = {name: int(len(self.tables[name])) for name in sorted(self.tables)}
        summary.files = sorted(self.arrays)
        data = summary.to_dict()
        problems = check_summary(data)
        if problems:
            raise RuntimeError(f"bug: the summary does not follow summary_schema.json: {problems[0]}")
        with output_folder(folder, overwrite) as tmp:
            for name, table in self.tables.items():
                write_table(tmp, name, table)
            for name, arrays in self.arrays.items():
                np.savez_compressed(tmp / name, **arrays)
            write_json(tmp, data)
            if after is not None:
                after(tmp)
        return Path(folder)


def now() -> tuple[float, str]:
    """(time.time(), local ISO 8601 stamp) of the start of a run."""
    started = time.time()
    return started, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))
