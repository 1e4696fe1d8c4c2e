"""Where runs write: owned output folders, written atomically, never over an input.

The rules, in one place (docs/safety.md tells them to users):

- Every output folder ersm-eval creates carries a marker file, ``.ersm-eval-output``
  (JSON: tool, version, command line, time). ``--overwrite`` replaces only a
  folder that carries it (or an empty one); any other folder is refused, so a
  data folder, a home folder or a project can never be deleted by a mistyped
  ``--out``.
- An output path never is, contains or lies inside an input (data root,
  checkpoint files, cache folder, the run folders a report reads), and never is
  the working folder, one of its parents, the home folder or ``/``.
- Before the long work starts: the place is checked to be writable, with room
  (``MIN_FREE_BYTES``), and locked: a second run on the same ``--out`` stops at
  once instead of racing the first (the lock is a file beside the output,
  ``.<name>.ersm-lock``, held with ``flock`` and removed when the run ends).
- A run is written into a temporary folder beside the output and renamed when
  complete, so an interrupted run (error, Ctrl-C) leaves nothing under the final
  name. Folders and files get the modes the user's umask asks for.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from ersm_core.versions import versions
from ersm_core.plain import to_plain
from ersm_core.errors import ConfigError
from ersm_core.files import apply_umask, atomic_path, atomic_write_bytes, atomic_write_text
from ersm_eval.schema import SUMMARY_JSON, TABLES

try:  # POSIX; elsewhere the lock falls back to exclusive creation of the lock file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MARKER", "MIN_FREE_BYTES", "check_name_length", "check_output_dir", "check_output_path", "check_output_file", "default_out", "output_folder",
    "mark_output_dir", "is_marked", "release_locks", "write_table", "write_json", "run_info",
    "atomic_path", "atomic_write_bytes", "atomic_write_text",
]

MARKER = ".ersm-eval-output"  # file in every output folder ersm-eval creates
MIN_FREE_BYTES = 64 * 2**20  # free space required where a run writes (tables, figures, report)
_TOOL = "ersm-eval"

InputPaths = Iterable["str | Path | None"]


# -- where a run may write --------------------------------------------------------------
def _resolve(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_path(out: str | Path, inputs: InputPaths = (), option: str = "--out") -> Path:
    """Refuse an output path that is the working folder, home, ``/``, or overlaps an input.

    An input overlaps when the output is it, contains it (replacing the output
    would delete it) or lies inside it (the run would write into it). Inputs that
    are None are ignored. Returns the output path as given.
    """
    target = _resolve(out)
    cwd, home = _resolve(os.getcwd()), _resolve(Path.home())
    special = {Path(target.anchor): "the file-system root", home: "your home folder"}
    if target in special:
        raise ConfigError(f"{option} {out} is {special[target]}; give a folder of its own, e.g. runs/NAME")
    if _inside(cwd, target):
        what = "the working folder" if target == cwd else f"a parent of the working folder {cwd}"
        raise ConfigError(f"{option} {out} is {what}; give a folder of its own, e.g. runs/NAME")
    for given in inputs:
        if given is None or str(given) == "":
            continue
        source = _resolve(given)
        if target == source:
            relation = "is"
        elif _inside(source, target):
            relation = "contains"
        elif _inside(target, source):
            relation = "lies inside"
        else:
            continue
        raise ConfigError(
            f"{option} {out} {relation} the input {given}; ersm-eval never writes into, over or around "
            f"what it reads: choose an {option} outside it"
        )
    return Path(out)


_TEMP_EXTRA = {"folder": 18, "file": 14}  # bytes the temporary names add: ".<name>.XXXXXXXX.partial" / ".<name>.XXXXXXXX.tmp"


def _name_max(folder: Path) -> tuple[int, int]:
    """(longest file name, longest path) the file system under ``folder`` allows; 255 and 4096 when unknown."""
    limits = []
    for key, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits.append(int(os.pathconf(folder, key)) or default)
        except (OSError, ValueError, AttributeError):  # pragma: no cover - no pathconf (Windows) or unknown key
            limits.append(default)
    return limits[0], limits[1]


def check_name_length(out: str | Path, kind: str = "folder", option: str = "--out", names: Iterable[str] = ()) -> None:
    """Refuse an output whose name, or a temporary name the run creates beside it, the file system cannot hold.

    ``kind``: "folder" (written as ``.<name>.XXXXXXXX.partial``, locked as ``.<name>.ersm-lock``) or
    "file" (written as ``.<name>.XXXXXXXX.tmp``); ``names``: other files written beside it (a history CSV).
    Checked before any work, so a long run does not end with "File name too long".
    """
    path = Path(os.path.abspath(os.path.expanduser(str(out))))
    name_max, path_max = _name_max(_existing_ancestor_plain(path.parent))
    extra = _TEMP_EXTRA[kind]
    for part in path.parent.parts:
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(f"{option} {out}: the folder name {part[:32]}... is {len(os.fsencode(part))} bytes long, "
                              f"more than the {name_max} this file system allows; choose a shorter {option}")
    for name in (path.name, *names):
        size = len(os.fsencode(name))
        if size + extra > name_max:
            raise ConfigError(
                f"{option} {out}: the name {name[:32]}... is {size} bytes long and ersm-eval writes it under a temporary "
                f"name {extra} bytes longer, more than the {name_max} this file system allows; choose a name of at most "
                f"{name_max - extra} bytes")
    if len(os.fsencode(str(path))) + extra >= path_max:
        raise ConfigError(f"{option} {out} is {len(os.fsencode(str(path)))} bytes long as a full path, too long for this "
                          f"file system ({path_max}); choose a shorter {option}")


def _existing_ancestor_plain(path: Path) -> Path:
    """The nearest folder of ``path`` that exists (``path`` absolute), without resolving links."""
    while not os.path.isdir(path) and path != path.parent:
        path = path.parent
    return path


def is_marked(folder: str | Path) -> bool:
    """True when ``folder`` carries the marker of an ersm-eval output folder."""
    marker = Path(folder) / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("tool") == _TOOL


def mark_output_dir(folder: str | Path, command: str | None = None) -> Path:
    """Write the marker file into an output folder ersm-eval is creating."""
    if command is None:
        command = " ".join([_TOOL, *sys.argv[1:]]) if sys.argv else _TOOL
    data = {
        "tool": _TOOL,
        "version": versions().get("ersm_eval", "unknown"),
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    marker = Path(folder) / MARKER
    marker.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return marker


def _check_replaceable(out: Path, overwrite: bool) -> None:
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"output path {out} is a broken symbolic link; remove it or choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"output folder {out} exists and is not empty; pass --overwrite to replace it or choose another --out")
        if out.is_symlink():
            raise ConfigError(f"output folder {out} is a symbolic link; --overwrite replaces only real folders, choose another --out")
        if not is_marked(out):
            raise ConfigError(
                f"refusing to overwrite {out}: it was not written by ersm-eval (no {MARKER} marker file), so "
                "--overwrite may not delete it; choose another --out or move the folder away yourself"
            )


def _existing_ancestor(path: Path) -> Path:
    path = _resolve(path)
    while not path.exists():
        path = path.parent
    return path


def _check_room(place: Path, option: str = "--out", need: int | None = None) -> None:
    need = MIN_FREE_BYTES if need is None else need
    folder = _existing_ancestor(place)
    if not folder.is_dir():
        raise ConfigError(f"cannot write {option} {place}: {folder} is a file, not a folder")
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ConfigError(
            f"only {free / 2**20:.0f} MiB free on the disk holding {folder}; a run needs at least "
            f"{need / 2**20:.0f} MiB for its output: free some space or choose another {option}"
        )


# -- locks --------------------------------------------------------------------------------
_LOCKS: dict[Path, tuple[int, Path]] = {}  # resolved output path -> (fd, lock file)


def _is_main_process() -> bool:
    """Rank 0 under torchrun (or a single process): the only one that writes outputs."""
    return int(os.environ.get("RANK", "0") or 0) == 0


_CREATED: dict[Path, list[Path]] = {}  # resolved output path -> folders its lock created, outermost first


def _missing_folders(folder: Path) -> list[Path]:
    """The folders of ``folder`` (itself included) that do not exist yet, outermost first."""
    missing = []
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a run created (``_missing_folders``), innermost first, while they are empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:  # holds the output (the run succeeded) or something else: kept
            break


def _lock(out: Path, option: str = "--out") -> None:
    key = _resolve(out)
    if key in _LOCKS or not _is_main_process():
        return
    parent = Path(out).parent
    created = _missing_folders(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_empty(created)
        raise ConfigError(f"cannot create the folder {parent} for {option} {out}: {err.strerror}") from None
    try:
        _LOCKS[key] = (_take_lock(out, parent, option), parent / f".{Path(out).name}.ersm-lock")
    except BaseException:
        _remove_empty(created)
        raise
    _CREATED[key] = created


def _take_lock(out: Path, parent: Path, option: str) -> int:
    """Open and flock ``.<name>.ersm-lock`` in ``parent``; the file descriptor holding the lock."""
    lock = parent / f".{Path(out).name}.ersm-lock"
    busy = ConfigError(
        f"another ersm-eval run is writing {option} {out} right now (lock file {lock}); wait for it to finish "
        f"or choose another {option}"
    )
    for _ in range(3):  # the file may be removed by its holder between our open and our lock
        try:
            if fcntl is None:  # pragma: no cover - Windows: exclusive creation
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            else:
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
        except FileExistsError:  # pragma: no cover - Windows
            raise busy from None
        except OSError as err:
            raise ConfigError(f"cannot write into {parent} ({option} {out}): {err.strerror}; choose a folder you can write to") from None
        if fcntl is None:  # pragma: no cover
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise busy from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - lost three races in a row
        raise busy
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _unlock(out: Path) -> None:
    held = _LOCKS.pop(_resolve(out), None)
    if held is None:
        return
    fd, lock = held
    try:
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
        _remove_empty(_CREATED.pop(_resolve(out), []))


def release_locks() -> None:
    """Release every output lock this process holds (the CLI calls it when a command ends)."""
    for key in list(_LOCKS):
        _unlock(key)


atexit.register(release_locks)


def default_out(command: str, labels: Iterable[str]) -> Path:
    """The output folder of a command run without ``--out``: runs/<command>-<labels joined by -vs->
    (a '/' in a label becomes '_')."""
    return Path("runs") / f"{command}-{'-vs-'.join(str(label).replace('/', '_') for label in labels)}"


def check_output_dir(out: str | Path, overwrite: bool = False, inputs: InputPaths = ()) -> Path:
    """Check and lock an output folder; call before any long work starts.

    Refuses (ConfigError, one message): the working folder, its parents, home or
    ``/``; a path that is, contains or lies inside one of ``inputs``; a file; a
    non-empty folder without ``overwrite``; with ``overwrite``, a non-empty folder
    without the ersm-eval marker; a place that is not writable or lacks
    ``MIN_FREE_BYTES``; an output another run is writing (lock). The lock is held
    until :func:`output_folder` finishes or :func:`release_locks` is called.
    Calling it again for a folder this process holds is a no-op re-check.
    """
    check_name_length(out, "folder")
    out = check_output_path(out, inputs)
    _check_replaceable(out, overwrite)
    _check_room(out)
    _lock(out)
    return out


def check_output_file(path: str | Path, overwrite: bool = False, inputs: InputPaths = (), option: str = "--out") -> Path:
    """The file counterpart of :func:`check_output_dir` for outputs that are one file (a checkpoint).

    An existing file is replaced only with ``overwrite`` and only when it is an
    ersm-eval checkpoint; the path must not overlap an input or be a folder.
    """
    from ersm_core.checkpoint import is_checkpoint_file

    check_name_length(path, "file", option, names=[f"{Path(path).stem}.history.csv"])
    path = check_output_path(path, inputs, option)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a checkpoint file name such as {path / 'model.pt'}")
    if path.exists():
        if not overwrite:
            raise ConfigError(f"{path} already exists; pass --overwrite to replace it or choose another {option}")
        if not is_checkpoint_file(path):
            raise ConfigError(
                f"refusing to overwrite {path}: it is not an ersm-eval checkpoint, so --overwrite may not replace it; "
                f"choose another {option}"
            )
    _check_room(path.parent, option)
    return path


@contextmanager
def output_folder(out: str | Path, overwrite: bool = False, inputs: InputPaths = ()) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out``; on error it is removed.

    The folder carries the marker from the start. ``out`` is checked (and locked)
    as :func:`check_output_dir` does, again just before it is replaced.
    """
    out = check_output_dir(out, overwrite, inputs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        try:
            apply_umask(tmp)
            mark_output_dir(tmp)
            yield tmp
            _check_replaceable(out, overwrite)  # re-check: the folder may have changed during the run
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        _unlock(out)


# -- writing ------------------------------------------------------------------------------
def write_table(folder: Path, name: str, df: pd.DataFrame) -> Path:
    """Write a schema table as CSV (columns checked against the schema, floats at full precision)."""
    if name in TABLES:
        missing = [c for c in TABLES[name] if c not in df.columns]
        if missing:
            raise RuntimeError(f"bug: table {name} lacks columns {missing}")
    path = Path(folder) / name
    df.to_csv(path, index=False, float_format="%.10g")
    return path


def write_json(folder: Path, data: dict[str, Any], name: str = SUMMARY_JSON) -> Path:
    """Write a JSON file with stable key order."""
    path = Path(folder) / name
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=to_plain) + "\n")
    return path


def run_info(started: float) -> dict[str, Any]:
    """Command line, versions and timing for summary.json."""
    return {
        "command_line": " ".join(["ersm-eval", *sys.argv[1:]]) if sys.argv else "",
        "versions": versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "run_seconds": round(time.time() - started, 3),
    }
