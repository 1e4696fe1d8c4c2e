"""The one subset rule: seeded, class-stratified, sorted; the same images in every command."""

import numpy as np
import pytest
from PIL import Image

from ersm_core.errors import ConfigError
from ersm_eval.subset import dataset_labels, indices_sha256, stratified_split, stratified_subset, subset_record

SORTED_LABELS = [0] * 10 + [1] * 10 + [2] * 10  # a dataset stored class by class


def test_subset_takes_every_class_equally_and_is_sorted():
    picked = stratified_subset(SORTED_LABELS, 9, seed=0)
    assert picked == sorted(picked) and len(set(picked)) == 9
    assert np.bincount(np.asarray(SORTED_LABELS)[picked]).tolist() == [3, 3, 3]
    # the first 9 images would all be cats
    assert picked != list(range(9))


def test_subset_is_deterministic_and_depends_on_the_seed():
    assert stratified_subset(SORTED_LABELS, 12, seed=5) == stratified_subset(SORTED_LABELS, 12, seed=5)
    assert stratified_subset(SORTED_LABELS, 12, seed=5) != stratified_subset(SORTED_LABELS, 12, seed=6)


def test_subset_remainder_and_small_classes():
    # 10 images over 3 classes: 3 each plus one for a seeded class
    counts = np.bincount(np.asarray(SORTED_LABELS)[stratified_subset(SORTED_LABELS, 10, seed=1)])
    assert sorted(counts.tolist()) == [3, 3, 4]
    # a class of 2 images gives what it has; the others share the rest equally (water filling)
    labels = [0] * 2 + [1] * 20 + [2] * 20
    counts = np.bincount(np.asarray(labels)[stratified_subset(labels, 12, seed=0)])
    assert counts.tolist() == [2, 5, 5]
    # fewer images than classes: one each for a seeded choice of classes
    counts = np.bincount(np.asarray(SORTED_LABELS)[stratified_subset(SORTED_LABELS, 2, seed=0)], minlength=3)
    assert sorted(counts.tolist()) == [0, 1, 1]


def test_subset_whole_dataset_and_bad_limit():
    assert stratified_subset(SORTED_LABELS, None) == list(range(30))
    assert stratified_subset(SORTED_LABELS, 500) == list(range(30))
    with pytest.raises(ConfigError, match="--limit must be at least 1"):
        stratified_subset(SORTED_LABELS, 0)


def test_a_class_choice_does_not_depend_on_other_classes():
    # class 0's images are the first of its own seeded order, whatever else is in the dataset
    a = stratified_subset([0] * 10 + [1] * 10, 4, seed=3)
    b = stratified_subset([0] * 10 + [1] * 10 + [2] * 10, 6, seed=3)
    assert [i for i in a if i < 10] == [i for i in b if i < 10]


def test_split_is_stratified_disjoint_and_seeded():
    train, val = stratified_split(SORTED_LABELS, 0.2, seed=0)
    assert sorted(train + val) == list(range(30)) and not set(train) & set(val)
    assert np.bincount(np.asarray(SORTED_LABELS)[val]).tolist() == [2, 2, 2]
    assert stratified_split(SORTED_LABELS, 0.2, seed=0) == (train, val)
    assert stratified_split(SORTED_LABELS, 0.2, seed=1)[1] != val
    # 10% of 30 = 3: one per class
    assert np.bincount(np.asarray(SORTED_LABELS)[stratified_split(SORTED_LABELS, 0.1)[1]]).tolist() == [1, 1, 1]
    assert stratified_split(SORTED_LABELS, 0.0) == (list(range(30)), [])
    assert len(stratified_split([0, 1, 0, 1], 0.01)[1]) == 1  # at least one image
    with pytest.raises(ConfigError, match="--val-fraction must be in"):
        stratified_split(SORTED_LABELS, 1.0)


def test_split_proportional_shares_by_largest_remainder():
    labels = [0] * 6 + [1] * 3 + [2] * 1  # 10 images, validation 5: exact shares 3, 1.5, 0.5
    _, val = stratified_split(labels, 0.5, seed=0)
    counts = np.bincount(np.asarray(labels)[val], minlength=3).tolist()
    assert counts[0] == 3 and counts[1] + counts[2] == 2 and counts[1] >= 1


def test_dataset_labels_reads_no_images_when_it_can():
    class WithLabels:
        labels = [2, 0, 1]

        def __len__(self):
            return 3

        def load(self, i):  # pragma: no cover - must not be called
            raise AssertionError("decoded an image")

    class WithSamples(WithLabels):
        labels = None
        samples = [("a.jpg", 1), ("b.jpg", 1), ("c.jpg", 0)]

    class OnlyLoad:
        def __len__(self):
            return 2

        def load(self, i):
            from ersm_core.data import RawItem

            return RawItem(image=Image.new("RGB", (4, 4)), label=1 - i)

    assert dataset_labels(WithLabels()).tolist() == [2, 0, 1]
    assert dataset_labels(WithSamples()).tolist() == [1, 1, 0]
    assert dataset_labels(OnlyLoad()).tolist() == [1, 0]


def test_provenance_record():
    import hashlib

    assert indices_sha256([0, 5, 9]) == hashlib.sha256(b"0,5,9").hexdigest()
    record = subset_record([0, 5, 9], limit=3, seed=2, total=30)
    assert record["indices"] == [0, 5, 9] and record["subset_seed"] == 2 and record["limit"] == 3
    assert record["n_images"] == 3 and record["of"] == 30
    assert subset_record(range(30), limit=None, seed=0, total=30)["indices"] is None


def test_load_eval_dataset_limit_is_stratified(tiny_checkpoint):
    from ersm_core.checkpoint import load_checkpoint
    from ersm_eval.context import load_eval_dataset

    ckpt = load_checkpoint(tiny_checkpoint)
    data, indices = load_eval_dataset(ckpt, "synthetic", "test", limit=20, dataset_options={"n_test": 64}, subset_seed=4)
    labels = dataset_labels(data)
    assert indices == stratified_subset(labels, 20, seed=4)
    assert np.bincount(labels[indices]).tolist() == [2] * 10


def test_limit_on_a_class_sorted_folder_takes_every_class_equally(tmp_path):
    from ersm_core.checkpoint import load_checkpoint, save_checkpoint
    from ersm_core.model import ModelConfig, build_model
    from ersm_eval.context import load_eval_dataset

    classes = ["abyssinian", "beagle", "chihuahua"]
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (20, 16), (40 * c, 10 * i, 0)).save(tmp_path / split / name / f"{i}.png")
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "m.pt", build_model(ModelConfig(num_classes=3, image_size=32)), classes))
    data, indices = load_eval_dataset(ckpt, "imagefolder", "test", data_root=tmp_path, limit=6, subset_seed=1)
    labels = dataset_labels(data)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5  # stored class by class
    assert np.bincount(labels[indices]).tolist() == [2, 2, 2] and indices == sorted(indices)
    # the same images whichever command asks (they all go through load_eval_dataset), and train's test subset too
    again = load_eval_dataset(ckpt, "imagefolder", "test", data_root=tmp_path, limit=6, subset_seed=1)[1]
    assert again == indices == stratified_subset(labels, 6, seed=1)
