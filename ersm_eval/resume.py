"""Resuming an interrupted evaluation: finished per-image records kept in chunk files beside the output.

Every evaluator's records are per image (image axis first) and every table is computed
from the records sorted by dataset index, so an evaluation can stop anywhere and go on
later: the records of the images it finished, joined with those of the rest, give the
same tables byte for byte as one uninterrupted run.

While an evaluation runs, :class:`RecordStore` writes the records of the images finished
so far to ``.<out>.resume/`` beside the output folder, at most every
``ERSM_EVAL_RESUME_SECONDS`` seconds (default 60) and once more when the run is
stopped (Ctrl-C, SIGTERM or an error). A chunk is one ``.npz`` of plain arrays written
atomically, so a kill (even SIGKILL) leaves whole chunks only. With ``--resume`` the next
run of the same command reads them, evaluates only the remaining images and writes the
whole result; the folder is removed once the result is written. The store is keyed by
everything that decides the records (checkpoint, dataset, images, settings): a resume
with other settings is refused with the fields that differ. Without ``--resume`` an old
store is discarded (it is the tool's own folder, carrying its marker).

A run whose evaluations must go on from the same images (a study's checkpoints sharing
one backbone pass) restricts each store to the images all of them finished
(:meth:`RecordStore.restrict`) before it goes on.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ersm_core.errors import ConfigError
from ersm_core.files import atomic_write_bytes, atomic_write_text
from ersm_core.plain import to_plain
from ersm_eval.output import is_marked, mark_output_dir
from ersm_eval.records import concat_records, sort_records
from ersm_eval.results import read_json_file

__all__ = ["RecordStore", "store_folder", "flush_seconds"]

_CHUNK = re.compile(r"^(?P<part>[A-Za-z0-9_.-]+)\.r(?P<rank>\d+)\.(?P<seq>\d{6})\.npz$")


def store_folder(out: str | Path) -> Path:
    """The resume folder of the output folder ``out``: ``.<name>.resume`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.resume"


def flush_seconds() -> float:
    """Seconds between two chunk writes (``ERSM_EVAL_RESUME_SECONDS``, default 60; 0: after every batch)."""
    raw = os.environ.get("ERSM_EVAL_RESUME_SECONDS", "60")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"ERSM_EVAL_RESUME_SECONDS must be a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise ConfigError(f"ERSM_EVAL_RESUME_SECONDS must be 0 or more, got {raw!r}")
    return value


def _safe_part(part: str) -> str:
    """A chunk-file prefix from an evaluation's name (its label): letters, digits, '_', '-', '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part)[:80] or "part"


class RecordStore:
    """Finished per-image records of one evaluation (``part``) of a run writing ``out``.

    Args:
        out: the run's output folder (the store lives beside it, see :func:`store_folder`).
        part: the evaluation's name within the run (e.g. ``deletion-ersm_full``).
        key: plain data deciding the records (checkpoint hash, dataset, images, settings).
        indices: every dataset index the evaluation covers.
        resume: read the records an interrupted run left; without it they are discarded.
        rank: this process's rank under torchrun (chunk files are per rank).

    Attributes:
        done: the records read back (None when nothing was resumed), sorted by index.
        resumed: how many images they cover.
    """

    def __init__(self, out: str | Path, part: str, key: dict[str, Any], indices: Sequence[int], resume: bool,
                 rank: int = 0) -> None:
        self.folder = store_folder(out)
        self.part = _safe_part(part)
        self.key = to_plain({**key, "indices": [int(i) for i in indices]})
        self.rank = int(rank)
        self._saved: set[int] = set()
        self._seq = 0
        self._last = time.monotonic()
        self._interval = flush_seconds()
        self.done: dict[str, np.ndarray] | None = None
        self.found = False  # a stored key was found and equals this run's (with resume)
        if self.folder.exists() and not is_marked(self.folder):
            raise ConfigError(f"{self.folder} exists but was not written by ersm-eval; move it away to run here")
        key_file = self.folder / f"{self.part}.key.json"
        if resume and key_file.exists():
            self._check_key(key_file)
            self.found = True
            self.done = self._read(set(self.key["indices"]))
        elif self.rank == 0:
            self._discard()
        if self.done is not None:
            self._saved = {int(i) for i in self.done["index"]}
            self._seq = 1 + max((int(m["seq"]) for m in self._chunks() if int(m["rank"]) == self.rank), default=-1)
        self._ready = False

    @property
    def resumed(self) -> int:
        return 0 if self.done is None else len(self.done["index"])

    @property
    def done_indices(self) -> set[int]:
        return set(self._saved)

    # -- reading back -----------------------------------------------------------------------
    def _check_key(self, key_file: Path) -> None:
        stored = read_json_file(key_file, ConfigError)
        if stored != self.key:
            fields = sorted(k for k in set(stored) | set(self.key) if stored.get(k) != self.key.get(k))
            raise ConfigError(
                f"cannot resume: the interrupted run in {self.folder} was started with other "
                f"{', '.join(fields)}; run without --resume to start again"
            )

    def _chunks(self) -> list[dict[str, str]]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.iterdir()):
            match = _CHUNK.match(path.name)
            if match and match["part"] == self.part:
                found.append({"path": str(path), "rank": match["rank"], "seq": match["seq"]})
        return found

    def _read(self, allowed: set[int]) -> dict[str, np.ndarray] | None:
        parts = []
        for chunk in self._chunks():
            path = Path(chunk["path"])
            part = self._load(path)
            index = part.get("index")
            lengths = {len(v) for v in part.values() if np.ndim(v) > 0}
            if index is None or index.ndim != 1 or lengths != {len(index)} or not set(index.tolist()) <= allowed:
                raise ConfigError(f"cannot resume: {path} does not hold records of this run; run without --resume")
            if parts and set(part) != set(parts[0]):
                raise ConfigError(f"cannot resume: {path} holds other records than its neighbours; run without --resume")
            parts.append(part)
        if not parts:
            return None
        try:
            return sort_records(concat_records(parts, "the resumed evaluation"))
        except ValueError as err:  # the same image in two chunks
            raise ConfigError(f"cannot resume from {self.folder}: {err}; run without --resume") from None

    def _load(self, path: Path) -> dict[str, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as err:
            raise ConfigError(f"cannot resume: {path} is unreadable ({err}); run without --resume") from None

    def _discard(self) -> None:
        for chunk in self._chunks():
            Path(chunk["path"]).unlink(missing_ok=True)
        (self.folder / f"{self.part}.key.json").unlink(missing_ok=True)

    # -- writing ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self._ready:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if not is_marked(self.folder):
            mark_output_dir(self.folder, "resume")
        if self.rank == 0:
            atomic_write_text(self.folder / f"{self.part}.key.json", json.dumps(self.key, sort_keys=True))
        self._ready = True

    def write_key(self) -> None:
        """Create the folder and write the key now, before any record (a part holding no records, such as
        a study's list of checkpoints, is then checked on resume like any other)."""
        self._prepare()

    def due(self) -> bool:
        """Whether the interval since the last write has passed (ask before gathering records: it is cheap)."""
        return time.monotonic() - self._last >= self._interval

    def flush(self, records: dict[str, np.ndarray] | None, force: bool = False) -> None:
        """Write the records of images not written yet, when the interval has passed (or ``force``)."""
        if records is None or (not force and not self.due()):
            return
        index = np.asarray(records["index"], dtype=np.int64)
        new = ~np.isin(index, np.fromiter(self._saved, dtype=np.int64, count=len(self._saved)))
        self._last = time.monotonic()
        if not new.any():
            return
        self._prepare()
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v)[new] for k, v in records.items()})
        atomic_write_bytes(self.folder / f"{self.part}.r{self.rank}.{self._seq:06d}.npz", buffer.getvalue())
        self._seq += 1
        self._saved.update(int(i) for i in index[new])

    def restrict(self, indices: Iterable[int]) -> None:
        """Keep exactly the resumed records of the images in ``indices``; drop the others, on disk too.

        Each chunk holding a dropped image is replaced, in one atomic rename, by a chunk of the same
        name holding only its kept records (or removed when none is left), so a kill during the
        rewrite leaves every chunk either as it was or restricted: never an image twice, never a
        record that is not the image's; the next resume restricts again.
        """
        if self.done is None:
            return
        keep = np.fromiter({int(i) for i in indices}, dtype=np.int64)
        for chunk in self._chunks():
            path = Path(chunk["path"])
            part = self._load(path)
            inside = np.isin(part["index"], keep)
            if inside.all():
                continue
            if not inside.any():
                path.unlink(missing_ok=True)
                continue
            buffer = io.BytesIO()
            np.savez(buffer, **{k: v[inside] if np.ndim(v) > 0 else v for k, v in part.items()})
            atomic_write_bytes(path, buffer.getvalue())
        inside = np.isin(self.done["index"], keep)
        self.done = {k: v[inside] if np.ndim(v) > 0 else v for k, v in self.done.items()} if inside.any() else None
        self._saved = set() if self.done is None else {int(i) for i in self.done["index"]}

    def merged(self, records: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        """``records`` (this run's, gathered) joined with the resumed ones, sorted by index."""
        if self.done is None:
            return records
        parts = [self.done] + ([records] if records is not None else [])
        return sort_records(concat_records(parts, "the evaluation"))

    def remove(self) -> None:
        """Remove the store once the result is written (only the tool's own, marked folder)."""
        if self.folder.is_dir() and is_marked(self.folder):
            shutil.rmtree(self.folder, ignore_errors=True)
