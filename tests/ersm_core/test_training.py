"""The training loop: it learns, it is deterministic, it records what it did, it stops on NaN."""

import math

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
    check_output_file,
    history_path,
    train,
)

# a tiny run: 64 px (4×4 map), 96 training and 32 test images of 10 classes
TINY = dict(dataset="synthetic", n_train=96, n_test=32, batch_size=32, device="cpu")


def _tiny_model(variant="ersm_full", **kwargs):
    return ModelConfig(num_classes=10, variant=variant, image_size=64, **kwargs)


class _Recorder(TrainProgress):
    def __init__(self):
        self.events = []

    def start(self, epochs, train_batches, test_batches):
        self.events.append(("start", epochs, train_batches, test_batches))

    def epoch_start(self, epoch):
        self.events.append(("epoch_start", epoch))

    def train_step(self, n_images, running):
        self.events.append(("train_step", n_images))

    def test_step(self, n_images):
        self.events.append(("test_step", n_images))

    def epoch_end(self, row):
        self.events.append(("epoch_end", row["epoch"]))


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
    assert history[["train_acc", "test_acc"]].stack().between(0, 1).all()
    assert history["mean_keep"].between(0.5, 1.0).all()  # starts near init_keep = 0.9
    assert (history["seconds"] > 0).all()


def test_result_model_metrics_and_provenance(tiny_run):
    result, _ = tiny_run
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"
    assert result.class_names[:2] == ["disk-solid", "disk-striped"] and len(result.class_names) == 10
    assert result.metrics["test_acc"] == result.history["test_acc"].iloc[-1]
    assert result.metrics["mean_keep"] == pytest.approx(result.history["mean_keep"].iloc[-1])
    prov = result.provenance
    assert prov["dataset"] == "synthetic" and prov["dataset_options"] == {"n_train": 96, "n_test": 32}
    assert (prov["train_size"], prov["test_size"], prov["epochs"], prov["seed"]) == (96, 32, 2, 0)
    assert prov["final_test_acc"] == result.metrics["test_acc"]
    assert prov["train_config"]["lr"] == 1e-3 and prov["train_config"]["batch_size"] == 32
    assert prov["wall_seconds"] > 0 and len(prov["history"]) == 2


def test_progress_hooks_are_called_in_order(tiny_run):
    _, recorder = tiny_run
    events = recorder.events
    assert events[0] == ("start", 2, 3, 1)
    assert events[1] == ("epoch_start", 1)
    assert [e for e in events if e[0] == "train_step"] == [("train_step", 32)] * 6
    assert [e for e in events if e[0] == "test_step"] == [("test_step", 32)] * 2
    assert events[-1] == ("epoch_end", 2)


def test_save_writes_a_loadable_checkpoint_and_history(tiny_run, tmp_path):
    result, _ = tiny_run
    ckpt, hist = result.save(tmp_path / "run" / "model.pt")
    assert hist == tmp_path / "run" / "model.history.csv" == history_path(ckpt)
    loaded = load_checkpoint(ckpt)
    assert loaded.config == result.config and loaded.class_names == result.class_names
    assert loaded.provenance["final_test_acc"] == result.metrics["test_acc"]
    assert loaded.provenance["versions"]["torch"] == torch.__version__
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
    assert result.history["mean_keep"].isna().all()
    assert result.metrics["mean_keep"] is None and result.provenance["final_mean_keep"] is None
    assert (result.history["train_reg"] == 0).all()


def test_nan_loss_stops_with_a_clear_error(monkeypatch):
    def nan_loss(logits, labels, *args, **kwargs):
        return logits.sum() * float("nan")

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", nan_loss)
    with pytest.raises(ERSMError, match=r"diverged at epoch 1, step 1.*lower learning rate \(--lr"):
        train(_tiny_model(), TrainConfig(epochs=1, **{**TINY, "n_train": 32}))


def test_huge_learning_rate_diverges_with_a_clear_error():
    with pytest.raises(ERSMError, match="diverged"):
        train(_tiny_model("baseline"), TrainConfig(epochs=3, lr=1e12, **{**TINY, "n_train": 64, "batch_size": 8}))


def test_head_is_sized_for_the_dataset_and_limits_apply():
    result = train(
        ModelConfig(num_classes=2, variant="ersm_unary", image_size=64),
        TrainConfig(epochs=1, num_classes=3, limit_train=40, limit_test=20, **TINY),
    )
    assert result.config.num_classes == 3 and result.model.head.out_features == 3
    assert result.class_names == ["disk-solid", "disk-striped", "square-solid"]
    assert (result.provenance["train_size"], result.provenance["test_size"]) == (40, 20)
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
    assert check_output_file(path) == path
    path.write_bytes(b"x")
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        check_output_file(path)
    assert check_output_file(path, overwrite=True) == path
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_file(tmp_path)
