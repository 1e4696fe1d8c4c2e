"""A checkpoint's class names must match the dataset's, in order; else one message naming the first difference."""

from __future__ import annotations

import pytest

from ersm_core.errors import DatasetError
from ersm_eval.context import check_class_names
from tests.safety.inputs import imagefolder, one_line_error, run_cli, two_class_checkpoint, untouched


def test_first_difference_is_named():
    check_class_names(["cat", "dog"], ["cat", "dog"])
    with pytest.raises(DatasetError, match=r"class 1 is 'dog' in the checkpoint .* but 'fox' in dataset"):
        check_class_names(["cat", "dog", "eel"], ["cat", "fox", "eel"])
    with pytest.raises(DatasetError, match="has 2 classes but dataset"):
        check_class_names(["cat", "dog"], ["cat", "dog", "eel"])


@pytest.mark.parametrize("command", ["deletion", "occlusion", "sparsity"])
def test_renamed_class_folder_stops_every_command(tmp_path, command):
    ckpt = two_class_checkpoint(tmp_path / "two.pt", names=("cat", "dog"))
    root = imagefolder(tmp_path / "data", classes=("cat", "hound"))
    with untouched(root, ckpt):
        r = run_cli(command, ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "class 1 is 'dog' in the checkpoint", "but 'hound' in dataset 'imagefolder'")
    assert not (tmp_path / "o").exists()


def test_reordered_classes_would_permute_labels(tmp_path):
    # trained when the folders sorted as dog < wolf; a renamed 'wolf' -> 'coyote' now sorts first
    ckpt = two_class_checkpoint(tmp_path / "two.pt", names=("dog", "wolf"))
    root = imagefolder(tmp_path / "data", classes=("coyote", "dog"))
    with untouched(root, ckpt):
        r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "class 0 is 'dog' in the checkpoint", "but 'coyote'")


def test_class_count_mismatch_names_the_first_difference(tmp_path):
    # the test split's 'cat' folder renamed 'cow' while train keeps 'cat': classes cat, cow, dog (3) vs cat, dog (2)
    ckpt = two_class_checkpoint(tmp_path / "two.pt", names=("cat", "dog"))
    root = imagefolder(tmp_path / "data", classes=("cat", "dog"), split="train")
    imagefolder(root, classes=("cow", "dog"), split="test", seed=1)
    with untouched(root, ckpt):
        r = run_cli("deletion", ckpt, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o",
                    "--no-report", "--quiet")
        one_line_error(r, "has 3 classes but the checkpoint", "trained for 2",
                       "class 1 is 'cow' in the dataset but 'dog' in the checkpoint")
    assert not (tmp_path / "o").exists()


def test_extra_or_missing_class_is_named():
    with pytest.raises(DatasetError, match=r"class 2 is 'eel' in the dataset but the checkpoint has no class 2"):
        check_class_names(["cat", "dog"], ["cat", "dog", "eel"])
    with pytest.raises(DatasetError, match=r"class 2 is 'eel' in the checkpoint but the dataset has no class 2"):
        check_class_names(["cat", "dog", "eel"], ["cat", "dog"])
