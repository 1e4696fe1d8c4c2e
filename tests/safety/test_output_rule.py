"""The rule for every write: ersm-eval replaces only what it wrote, never an input, checks room
and locks before the work, and follows the user's umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ersm_core.errors import ConfigError
from ersm_core.files import atomic_write_bytes
from ersm_eval import output
from ersm_eval.output import MARKER, check_output_dir, check_output_path, is_marked, output_folder
from tests.safety.inputs import imagefolder, one_line_error, run_cli, two_class_checkpoint, untouched


@pytest.fixture()
def inputs(tmp_path):
    root = imagefolder(tmp_path / "data")
    ckpt = two_class_checkpoint(tmp_path / "models" / "two.pt")
    return root, ckpt


def _deletion(ckpt, root, out, *extra):
    return run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", out,
                   "--seeds", "0", "--steps", "2", "--no-report", "--quiet", *extra)


def test_run_folder_carries_the_marker_and_overwrite_replaces_it(tmp_path, inputs):
    root, ckpt = inputs
    out = tmp_path / "runs" / "a"
    with untouched(root, ckpt):
        first = _deletion(ckpt, root, out)
        assert first.exit_code == 0, first.output
        marker = json.loads((out / MARKER).read_text())
        assert marker["tool"] == "ersm-eval" and marker["command"].startswith("ersm-eval") and marker["version"]
        (out / "stale.txt").write_text("from the first run")
        second = _deletion(ckpt, root, out, "--overwrite")
        assert second.exit_code == 0, second.output
    assert not (out / "stale.txt").exists() and is_marked(out)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a"], "no lock, partial or old folder left"


def test_overwrite_refuses_a_folder_ersm_eval_did_not_write(tmp_path, inputs):
    root, ckpt = inputs
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with untouched(root, ckpt, precious):
        line = one_line_error(_deletion(ckpt, root, precious, "--overwrite"), "not written by ersm-eval")
    assert MARKER in line


@pytest.mark.parametrize("where", ["data_root", "inside_data_root", "checkpoint_folder", "parent_of_data"])
def test_output_never_overlaps_an_input(tmp_path, inputs, where):
    root, ckpt = inputs
    # a folder ersm-eval wrote, holding the checkpoint: the marker alone would allow --overwrite
    if where == "checkpoint_folder":
        (ckpt.parent / MARKER).write_text(json.dumps({"tool": "ersm-eval"}))
    out = {"data_root": root, "inside_data_root": root / "test" / "runs", "checkpoint_folder": ckpt.parent,
           "parent_of_data": tmp_path}[where]
    relation = {"data_root": "is the input", "inside_data_root": "lies inside the input",
                "checkpoint_folder": "contains the input", "parent_of_data": "contains the input"}[where]
    with untouched(root, ckpt):
        one_line_error(_deletion(ckpt, root, out, "--overwrite"), relation)
    assert not (root / "test" / "runs").exists()


def test_cache_folder_is_an_input(tmp_path, inputs):
    root, ckpt = inputs
    cache = tmp_path / "cache"
    cache.mkdir()
    with untouched(root, ckpt, cache):
        one_line_error(_deletion(ckpt, root, cache / "run", "--cache", cache), "lies inside the input")


def test_working_folder_home_and_root_are_refused(tmp_path, inputs, monkeypatch):
    root, ckpt = inputs
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    one_line_error(_deletion(ckpt, root, ".", "--overwrite"), "is the working folder")
    one_line_error(_deletion(ckpt, root, "..", "--overwrite"), "a parent of the working folder")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    one_line_error(_deletion(ckpt, root, tmp_path / "home", "--overwrite"), "your home folder")
    with pytest.raises(ConfigError, match="file-system root"):
        check_output_path("/")
    assert sorted(p.name for p in work.iterdir()) == []


def test_second_run_on_the_same_output_is_refused_while_the_first_holds_the_lock(tmp_path, inputs):
    fcntl = pytest.importorskip("fcntl")
    root, ckpt = inputs
    out = tmp_path / "runs" / "busy"
    out.parent.mkdir()
    lock = out.parent / ".busy.ersm-lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)  # another run holding the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        one_line_error(_deletion(ckpt, root, out), "another ersm-eval run is writing")
        assert not out.exists()
    finally:
        os.close(fd)
    assert _deletion(ckpt, root, out).exit_code == 0  # the lock released: the run goes ahead


def test_lock_is_held_until_the_folder_is_written(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "o"
    with output_folder(out) as tmp:
        (tmp / "a.csv").write_text("x")
        fd = os.open(tmp_path / ".o.ersm-lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not (tmp_path / ".o.ersm-lock").exists()


def test_not_enough_room_is_refused_before_any_work(tmp_path, inputs, monkeypatch):
    root, ckpt = inputs
    real = output.shutil.disk_usage
    monkeypatch.setattr(output.shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))
    with untouched(root, ckpt):
        one_line_error(_deletion(ckpt, root, tmp_path / "o"), "only 10 MiB free")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_place_is_refused(tmp_path, inputs):
    root, ckpt = inputs
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(_deletion(ckpt, root, locked / "o"), "cannot write into")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with output_folder(tmp_path / "o") as tmp:
            (tmp / "t.csv").write_text("x")
        atomic_write_bytes(tmp_path / "ckpt.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "o" / MARKER).stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "ckpt.bin").stat().st_mode) == 0o666 & ~umask


def test_checkpoint_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ckpt = two_class_checkpoint(tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o644


def test_train_overwrites_only_a_checkpoint_and_never_writes_into_the_data(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    with untouched(notes):
        one_line_error(run_cli("train", "--out", notes, "--overwrite", "--epochs", "1", "--quiet"),
                       "is not an ersm-eval checkpoint")
    root = imagefolder(tmp_path / "data", split="train")
    imagefolder(root, split="test", seed=1)
    with untouched(root):
        one_line_error(run_cli("train", "--dataset", "imagefolder", "--data-root", root, "--out", root / "m.pt",
                               "--epochs", "1", "--image-size", "32", "--quiet"), "lies inside the input")


def test_library_check_refuses_unmarked_and_accepts_marked(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(ConfigError, match="not written by ersm-eval"):
        check_output_dir(out, overwrite=True)
    (out / MARKER).write_text(json.dumps({"tool": "something else"}))
    with pytest.raises(ConfigError, match="not written by ersm-eval"):
        check_output_dir(out, overwrite=True)
    (out / MARKER).write_text(json.dumps({"tool": "ersm-eval"}))
    assert check_output_dir(out, overwrite=True) == out
    output.release_locks()
    assert not any(p.name.endswith(".ersm-lock") for p in tmp_path.iterdir())


def test_a_name_too_long_for_the_file_system_is_refused_before_the_work(tmp_path, inputs):
    """The temporary folder ``.<name>.XXXXXXXX.partial`` is 18 bytes longer than the name: a 240-byte
    --out used to run the whole evaluation, then fail with "File name too long"."""
    root, ckpt = inputs
    long_name = tmp_path / ("x" * 240)
    with untouched(root, ckpt):
        one_line_error(_deletion(ckpt, root, long_name), "choose a name of at most")
        one_line_error(_deletion(ckpt, root, tmp_path / ("y" * 300) / "o"), "choose a shorter --out")
        one_line_error(run_cli("train", "--out", tmp_path / ("z" * 250 + ".pt"), "--quiet"), "choose a name of at most")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "models"]
    output.check_name_length(tmp_path / ("x" * 230), "folder")  # fits: 230 + 18 ≤ 255
    with pytest.raises(ConfigError, match="temporary name 14 bytes longer"):
        output.check_name_length(tmp_path / "m.pt", "file", names=["h" * 250])


def test_a_refused_run_leaves_no_folders_it_created(tmp_path, inputs):
    """The lock creates the missing parents of --out; a run refused after that removes exactly them."""
    root, _ = inputs
    empty = tmp_path / "zero.pt"
    empty.write_bytes(b"")
    (tmp_path / "outt").mkdir()
    with untouched(root, empty):
        one_line_error(_deletion(empty, root, tmp_path / "outt" / "newparent" / "a" / "b" / "out"), "is empty")
    assert sorted(p.name for p in (tmp_path / "outt").iterdir()) == []  # outt existed before: kept, empty
    # a folder that was there before the run, and a successful run's folders, stay
    _, ckpt = inputs
    assert _deletion(ckpt, root, tmp_path / "outt" / "new" / "o").exit_code == 0
    assert (tmp_path / "outt" / "new" / "o" / MARKER).is_file()


def test_library_lock_removes_only_the_folders_it_created(tmp_path):
    (tmp_path / "kept").mkdir()
    check_output_dir(tmp_path / "kept" / "a" / "b" / "o")
    assert (tmp_path / "kept" / "a" / "b").is_dir()
    output.release_locks()
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "a").exists()
