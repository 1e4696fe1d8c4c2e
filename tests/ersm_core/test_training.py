"""The training loop: it learns, it is deterministic, it records what it did, it stops on NaN."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ersm_core.checkpoint import load_checkpoint
from ersm_core.errors import ConfigError, DatasetError, ERSMError
from ersm_core.model import ModelConfig
from ersm_core.training import (
    HISTORY_COLUMNS,
    TrainConfig,
    TrainProgress,
    check_run_files,
    history_path,
    train,
)

# a tiny run: 64 px (4×4 map), 96 training-split images (86 train + 10 validation) and 32 test images of 10 classes
TINY = dict(dataset="synthetic", n_train=96, n_test=32, batch_size=32, device="cpu")


def _tiny_model(variant="ersm_full", **kwargs):
    return ModelConfig(num_classes=10, variant=variant, image_size=64, **kwargs)


class _Recorder(TrainProgress):
    def __init__(self):
        self.events = []

    def start(self, epochs, train_batches, val_batches):
        self.events.append(("start", epochs, train_batches, val_batches))

    def features_start(self, split, n_images):
        self.events.append(("features_start", split, n_images))

    def features_step(self, n_images):
        self.events.append(("features_step", n_images))

    def epoch_start(self, epoch):
        self.events.append(("epoch_start", epoch))

    def train_step(self, n_images, running):
        self.events.append(("train_step", n_images))

    def val_step(self, n_images):
        self.events.append(("val_step", n_images))

    def epoch_end(self, row):
        self.events.append(("epoch_end", row["epoch"]))

    def test_start(self, test_batches):
        self.events.append(("test_start", test_batches))

    def test_step(self, n_images):
        self.events.append(("test_step", n_images))

    def test_end(self, metrics):
        self.events.append(("test_end", metrics["test_acc"]))


def test_learns_far_above_chance():
    # 10 classes at 32 px (a 2×2 map): measured test accuracy after 3 epochs of 1000 images is
    # 34-44% for seeds 0, 1, 2 (on two versions of the generator); 64 px learns more slowly per CPU second
    result = train(
        ModelConfig(num_classes=10, variant="ersm_full", image_size=32),
        TrainConfig(dataset="synthetic", n_train=1000, n_test=200, epochs=3, device="cpu"),
    )
    assert result.metrics["test_acc"] >= 2.5 * 0.10, result.history
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]


@pytest.fixture(scope="module")
def tiny_run():
    recorder = _Recorder()
    result = train(_tiny_model(), TrainConfig(epochs=2, **TINY), progress=recorder)
    return result, recorder


def test_history_columns_and_values(tiny_run):
    result, _ = tiny_run
    history = result.history
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2]
    assert history["lr"].iloc[0] == pytest.approx(1e-3)
    assert history["lr"].iloc[1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))  # cosine per step
    assert (history["train_loss"] - history["train_ce"] - history["train_reg"]).abs().max() < 1e-5
    assert (history["train_reg"] > 0).all()
    assert history[["train_acc", "val_acc"]].stack().between(0, 1).all()
    assert history["val_keep"].between(0.5, 1.0).all()  # starts near init_keep = 0.9
    # the test split is scored once, after the last epoch
    assert history["test_acc"].isna().tolist() == [True, False] and history["test_keep"].isna().tolist() == [True, False]
    assert (history["seconds"] > 0).all()


def test_result_model_metrics_and_provenance(tiny_run):
    result, _ = tiny_run
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"
    assert result.class_names[:2] == ["disk-solid", "disk-striped"] and len(result.class_names) == 10
    assert result.metrics["test_acc"] == result.history["test_acc"].iloc[-1]
    assert result.metrics["val_acc"] == result.history["val_acc"].iloc[-1]
    assert result.metrics["mean_keep"] == pytest.approx(result.history["test_keep"].iloc[-1])
    prov = result.provenance
    assert prov["dataset"] == "synthetic" and prov["dataset_options"] == {"n_train": 96, "n_test": 32}
    assert (prov["train_size"], prov["val_size"], prov["test_size"], prov["epochs"], prov["seed"]) == (86, 10, 32, 2, 0)
    # the validation images: one per class (the synthetic labels cycle, so class c holds indices c, c+10, ...)
    val = prov["selection"]["val_indices"]
    assert len(val) == 10 and sorted(i % 10 for i in val) == list(range(10))
    assert prov["selection"]["test"]["rule"] == "all images" and prov["selection"]["subset_seed"] == 0
    assert prov["transform"]["eval"]["interpolation"] == "bilinear" and prov["transform"]["train"]["hflip"] is True
    assert prov["feature_cache"] == {"used": False}
    assert prov["final_test_acc"] == result.metrics["test_acc"]
    assert prov["train_config"]["lr"] == 1e-3 and prov["train_config"]["batch_size"] == 32
    assert prov["wall_seconds"] > 0 and len(prov["history"]) == 2


def test_progress_hooks_are_called_in_order(tiny_run):
    _, recorder = tiny_run
    events = recorder.events
    assert events[0] == ("start", 2, 3, 1)
    assert events[1] == ("epoch_start", 1)
    assert [e for e in events if e[0] == "train_step"] == [("train_step", 32), ("train_step", 32), ("train_step", 22)] * 2
    assert [e for e in events if e[0] == "val_step"] == [("val_step", 10)] * 2
    assert [e[0] for e in events[-4:]] == ["epoch_end", "test_start", "test_step", "test_end"]
    assert events[-4] == ("epoch_end", 2) and events[-3] == ("test_start", 1) and events[-2] == ("test_step", 32)


def test_save_writes_a_loadable_checkpoint_and_history(tiny_run, tmp_path):
    result, _ = tiny_run
    ckpt, hist = result.save(tmp_path / "run" / "model.pt")
    assert hist == tmp_path / "run" / "model.history.csv" == history_path(ckpt)
    loaded = load_checkpoint(ckpt)
    assert loaded.config == result.config and loaded.class_names == result.class_names
    assert loaded.provenance["final_test_acc"] == result.metrics["test_acc"]
    assert loaded.provenance["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]  # metadata may omit the local tag
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), result.model(x))
    back = pd.read_csv(hist)
    assert list(back.columns) == HISTORY_COLUMNS
    pd.testing.assert_frame_equal(back, result.history, check_exact=False, rtol=1e-8)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["model.history.csv", "model.pt"]


@pytest.mark.parametrize("variant", ["ersm_full", "l0"])  # l0 also draws random gates in training
def test_same_seed_same_history(variant):
    config = TrainConfig(epochs=1, seed=3, **{**TINY, "n_train": 64})
    first = train(_tiny_model(variant), config)
    second = train(_tiny_model(variant), config)
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(first.history[columns], second.history[columns], check_exact=True)
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name
    if variant == "ersm_full":
        other = train(_tiny_model(variant), TrainConfig(epochs=1, seed=4, **{**TINY, "n_train": 64}))
        assert not torch.equal(other.model.head.weight, first.model.head.weight)


def test_baseline_has_no_keep_rate():
    result = train(_tiny_model("baseline"), TrainConfig(epochs=1, **{**TINY, "n_train": 32}))
    assert result.history["val_keep"].isna().all() and result.history["test_keep"].isna().all()
    assert result.metrics["mean_keep"] is None and result.provenance["final_mean_keep"] is None
    assert (result.history["train_reg"] == 0).all()


def test_nan_loss_stops_with_a_clear_error(monkeypatch):
    def nan_loss(logits, labels, *args, **kwargs):
        return logits.sum() * float("nan")

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", nan_loss)
    with pytest.raises(ERSMError, match=r"diverged at epoch 1, step 1.*lower learning rate \(--lr"):
        train(_tiny_model(), TrainConfig(epochs=1, **{**TINY, "n_train": 32}))


def test_huge_learning_rate_diverges_with_a_clear_error(monkeypatch):
    from ersm_core import config

    with pytest.raises(ConfigError, match="lr must be at most 10, got 1e"):
        TrainConfig(lr=1e12)
    monkeypatch.setitem(config.MAX_VALUES, "lr", 1e13)  # past the bound, the loss check still catches it
    with pytest.raises(ERSMError, match="diverged"):
        train(_tiny_model("baseline"), TrainConfig(epochs=3, lr=1e12, **{**TINY, "n_train": 64, "batch_size": 8}))


def test_head_is_sized_for_the_dataset_and_limits_apply():
    result = train(
        ModelConfig(num_classes=2, variant="ersm_unary", image_size=64),
        TrainConfig(epochs=1, num_classes=3, limit_train=40, limit_test=20, **TINY),
    )
    assert result.config.num_classes == 3 and result.model.head.out_features == 3
    assert result.class_names == ["disk-solid", "disk-striped", "square-solid"]
    assert (result.provenance["train_size"], result.provenance["val_size"], result.provenance["test_size"]) == (36, 4, 20)
    # the limit subsets are stratified: 40 of 3 classes -> 14/13/13 (train + validation); 20 test -> 7/7/6
    selection = result.provenance["selection"]
    assert sorted(np.bincount([i % 3 for i in selection["train_split"]["indices"]]).tolist()) == [13, 13, 14]
    assert sorted(np.bincount([i % 3 for i in selection["test"]["indices"]]).tolist()) == [6, 7, 7]
    assert result.config.beta == 0.0


def test_frozen_backbone_is_not_trained():
    torch.manual_seed(0)
    reference = train(_tiny_model(freeze_backbone=True), TrainConfig(epochs=1, **{**TINY, "n_train": 32}))
    from ersm_core.model import build_model

    torch.manual_seed(0)
    initial = build_model(_tiny_model(freeze_backbone=True))
    for name, value in initial.backbone.state_dict().items():
        assert torch.equal(value, reference.model.backbone.state_dict()[name]), name
    assert not torch.equal(initial.head.weight, reference.model.head.weight)


def test_train_config_is_checked():
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="n_train, spurious only apply to the synthetic dataset"):
        TrainConfig(dataset="cub", n_train=10, spurious=0.5)
    assert TrainConfig(n_test=5, spurious=0.0).dataset_options() == {"n_test": 5, "spurious": 0.0}


def test_missing_dataset_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError):
        train(_tiny_model(), TrainConfig(dataset="imagefolder", data_root=str(tmp_path / "nothing"), device="cpu"))


def test_check_output_file(tmp_path):
    path = tmp_path / "model.pt"
    assert check_run_files(path) == path
    path.write_bytes(b"x")
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        check_run_files(path)
    assert check_run_files(path, overwrite=True) == path
    with pytest.raises(ConfigError, match="is a folder"):
        check_run_files(tmp_path)
    # another run's history beside a new checkpoint name is not silently replaced
    (tmp_path / "other.history.csv").write_text("epoch\n1\n")
    with pytest.raises(ConfigError, match=r"other.history.csv already exists \(the history of another run\)"):
        check_run_files(tmp_path / "other.pt")
    assert check_run_files(tmp_path / "other.pt", overwrite=True) == tmp_path / "other.pt"


# -- validation split, history file, feature cache ------------------------------------------


def test_train_config_new_options_are_checked():
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\)"):
        TrainConfig(val_fraction=1.0)
    with pytest.raises(ConfigError, match="feature_views must be 0 or more"):
        TrainConfig(feature_views=-1)
    with pytest.raises(ConfigError, match="feature_views applies to cached training only"):
        TrainConfig(feature_views=2, feature_cache=False)
    with pytest.raises(ConfigError, match="--feature-cache needs --freeze-backbone"):
        train(_tiny_model(), TrainConfig(epochs=1, feature_cache=True, **TINY))
    with pytest.raises(ConfigError, match="--feature-views applies to cached training"):
        train(_tiny_model(), TrainConfig(epochs=1, feature_views=2, **TINY))


def test_no_validation_share():
    result = train(_tiny_model("baseline"), TrainConfig(epochs=1, val_fraction=0.0, **{**TINY, "n_train": 32}))
    assert result.provenance["train_size"] == 32 and result.provenance["val_size"] == 0
    assert result.history["val_acc"].isna().all() and result.metrics["val_acc"] is None


@pytest.mark.parametrize("variant", ["ersm_full", "l0"])  # l0 draws random gates while training
def test_cached_features_give_the_same_history(variant):
    config = dict(epochs=3, augment=False, **{**TINY, "n_train": 64, "batch_size": 16})
    slow = train(_tiny_model(variant, freeze_backbone=True), TrainConfig(feature_cache=False, **config))
    recorder = _Recorder()
    fast = train(_tiny_model(variant, freeze_backbone=True), TrainConfig(**config), progress=recorder)  # cache on by default
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(slow.history[columns], fast.history[columns], check_exact=False, rtol=1e-4, atol=1e-6)
    for (name, a), (_, b) in zip(slow.model.state_dict().items(), fast.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert slow.provenance["feature_cache"] == {"used": False}
    cache = fast.provenance["feature_cache"]
    # 58 training + 6 validation images, 256 channels × 4 × 4 float32 values each
    assert cache["used"] and cache["views"] == 1 and cache["bytes"] == 64 * 256 * 16 * 4
    assert ("features_start", "train", 58) in recorder.events and ("features_start", "val", 6) in recorder.events
    assert sum(e[1] for e in recorder.events if e[0] == "features_step") == 64


def test_feature_views_are_seeded_flips():
    from ersm_core.training import view_flips as _view_flips

    flips = _view_flips([3, 4, 5, 6, 7, 8, 9, 10], views=3, seed=0)
    assert flips.shape == (3, 8) and flips.any() and not flips.all()
    assert np.array_equal(flips, _view_flips([3, 4, 5, 6, 7, 8, 9, 10], views=3, seed=0))
    assert np.array_equal(flips[:, 2:], _view_flips([5, 6, 7, 8, 9, 10], views=3, seed=0))  # per image, not per position
    config = TrainConfig(epochs=2, feature_views=2, **{**TINY, "n_train": 32, "batch_size": 16})
    first = train(_tiny_model(freeze_backbone=True), config)
    second = train(_tiny_model(freeze_backbone=True), config)
    assert first.provenance["feature_cache"]["views"] == 2
    assert first.provenance["feature_cache"]["bytes"] == (2 * 29 + 3) * 256 * 16 * 4
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(first.history[columns], second.history[columns], check_exact=True)


def test_history_file_is_rewritten_after_every_epoch_and_survives_an_interrupt(tmp_path):
    path = tmp_path / "m.history.csv"

    class StopAfterTwo(TrainProgress):
        def epoch_end(self, row):
            written = pd.read_csv(path)
            assert written["epoch"].tolist() == list(range(1, row["epoch"] + 1))
            if row["epoch"] == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_tiny_model("baseline"), TrainConfig(epochs=5, **{**TINY, "n_train": 32}), progress=StopAfterTwo(),
              history_file=path)
    history = pd.read_csv(path)
    assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == [1, 2]
    assert history["test_acc"].isna().all()  # the test split was never scored
    assert [p.name for p in tmp_path.iterdir()] == ["m.history.csv"]  # no temporary files left

    done = train(_tiny_model("baseline"), TrainConfig(epochs=2, **{**TINY, "n_train": 32}), history_file=path)
    pd.testing.assert_frame_equal(pd.read_csv(path), done.history, check_exact=False, check_dtype=False, rtol=1e-8)


def test_write_history_is_atomic_and_follows_the_umask(tmp_path):
    import os

    import pandas as pd

    from ersm_core.training import write_history

    path = tmp_path / "run.history.csv"
    old = os.umask(0o027)
    try:
        write_history(path, pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.25]}))
    finally:
        os.umask(old)
    assert path.read_text() == "epoch,loss\n1,0.5\n2,0.25\n"
    assert path.stat().st_mode & 0o777 == 0o640  # 0666 less the umask 027, not mkstemp's private 0600
    assert [p.name for p in tmp_path.iterdir()] == ["run.history.csv"]  # no temporary file left

    class Broken(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            super().to_csv(*args, **kwargs)
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_history(path, Broken({"epoch": [9]}))
    assert path.read_text() == "epoch,loss\n1,0.5\n2,0.25\n"  # the old file untouched
    assert [p.name for p in tmp_path.iterdir()] == ["run.history.csv"]


def test_train_and_test_splits_with_other_classes_name_the_first_difference(tmp_path):
    from ersm_core.errors import ERSMError
    from tests.ersm_core.test_datasets import make_pets

    folder = make_pets(tmp_path)
    (folder / "annotations" / "test.txt").write_text("Abyssinian_3 1 1 1\nbeagle_2 2 2 1\n")
    with pytest.raises(ERSMError, match=r"the train and test splits have different classes \(2 vs 2; class 1 is "
                                        r"'Beagle' in the test split but 'American Bulldog' in the train split\)"):
        train(_tiny_model(), TrainConfig(dataset="pets", data_root=str(tmp_path), device="cpu"))
