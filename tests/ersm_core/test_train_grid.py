"""A grid of variants × seeds in one process: each member equals its separate run; one backbone pass is shared."""

import pandas as pd
import pytest
import torch

from ersm_core.errors import ConfigError
from ersm_core.model import ModelConfig
from ersm_core.training import (HISTORY_COLUMNS, GridMember, GridProgress, SharedFeatures, TrainConfig, TrainProgress,
                                grid_members, time_left, train, train_grid)

# 32 px compact_cnn (2×2 map), 40 training-split images, 21 test images (batches of 16 and 5), 2 epochs
TINY = dict(dataset="synthetic", n_train=40, n_test=21, batch_size=16, epochs=2, device="cpu", augment=False)
COLUMNS = [c for c in HISTORY_COLUMNS if c != "seconds"]
TIMING = ("wall_seconds",)  # and feature_cache.seconds, and history[*].seconds


def _model(variant="ersm_full", freeze=True):
    return ModelConfig(num_classes=10, variant=variant, image_size=32, freeze_backbone=freeze)


def _without_timing(provenance):
    out = {k: v for k, v in provenance.items() if k not in TIMING}
    out["feature_cache"] = {k: v for k, v in out["feature_cache"].items() if k != "seconds"}
    out["history"] = [{k: v for k, v in row.items() if k != "seconds"} for row in out["history"]]
    return out


def _assert_same_run(a, b):
    pd.testing.assert_frame_equal(a.history[COLUMNS], b.history[COLUMNS], check_exact=True)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    assert a.metrics == b.metrics
    assert _without_timing(a.provenance) == _without_timing(b.provenance)
    assert a.config == b.config


class _Passes(TrainProgress):
    def __init__(self, log):
        self.log = log

    def features_start(self, split, n_images):
        self.log.append(split)


class _Watch(GridProgress):
    def __init__(self):
        self.events, self.features = [], []

    def member_start(self, index, total, member, elapsed, left):
        self.events.append(("start", index, total, member.name, left is None))

    def member_end(self, index, total, member, result, elapsed, left):
        self.events.append(("end", index, total, member.name, left is None))

    def run(self, member):
        return _Passes(self.features)


@pytest.mark.parametrize("variant", ["ersm_full", "l0"])  # l0 draws random gates while training
def test_grid_member_equals_its_separate_run_exactly(variant):
    members = grid_members(["baseline", variant], [0, 3])
    watch = _Watch()
    results = dict(train_grid(_model(), TrainConfig(**TINY), members, progress=watch))
    assert [m.name for m in results] == ["baseline-s0", f"{variant}-s0", "baseline-s3", f"{variant}-s3"]
    for member in (GridMember(variant, 3), GridMember("baseline", 0)):
        alone = train(_model(member.variant), TrainConfig(**{**TINY, "seed": member.seed}))
        _assert_same_run(results[member], alone)
        assert results[member].provenance["seed"] == member.seed and results[member].config.variant == member.variant
    # a frozen random backbone is drawn from one fixed seed: one backbone pass for the whole grid
    assert watch.features == ["train", "val", "test"]
    assert [e[:4] for e in watch.events] == [
        ("start", 1, 4, "baseline-s0"), ("end", 1, 4, "baseline-s0"), ("start", 2, 4, f"{variant}-s0"),
        ("end", 2, 4, f"{variant}-s0"), ("start", 3, 4, "baseline-s3"), ("end", 3, 4, "baseline-s3"),
        ("start", 4, 4, f"{variant}-s3"), ("end", 4, 4, f"{variant}-s3")]
    assert [e[4] for e in watch.events][:2] == [True, False]  # no estimate before the first member ends


def test_loaded_backbone_is_computed_once_for_every_seed(tmp_path):
    weights = tmp_path / "backbone.pt"
    torch.manual_seed(123)
    from ersm_core.model import build_model

    torch.save(build_model(_model()).backbone.state_dict(), weights)
    watch = _Watch()
    results = dict(train_grid(_model(), TrainConfig(**TINY), grid_members(["ersm_full"], [0, 1, 2]),
                              weights=weights, progress=watch))
    assert watch.features == ["train", "val", "test"]  # one pass for three seeds
    alone = train(_model(), TrainConfig(**{**TINY, "seed": 2}), weights=weights)
    _assert_same_run(results[GridMember("ersm_full", 2)], alone)
    first, later = (results[GridMember("ersm_full", s)].provenance["feature_cache"] for s in (0, 2))
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in later.items() if k != "seconds"}


def test_grid_with_a_cache_folder_records_what_separate_runs_record(tmp_path):
    weights, folder = tmp_path / "backbone.pt", tmp_path / "cache"
    torch.manual_seed(7)
    from ersm_core.model import build_model

    torch.save(build_model(_model()).backbone.state_dict(), weights)
    config = TrainConfig(**{**TINY, "epochs": 1, "feature_cache_dir": str(folder)})
    results = dict(train_grid(_model(), config, grid_members(["ersm_full"], [0, 1]), weights=weights))
    first, second = (results[GridMember("ersm_full", s)].provenance["feature_cache"] for s in (0, 1))
    assert first["storage"] == second["storage"] == "disk" and first["reused"] == [] and second["reused"] == ["train", "val"]
    from dataclasses import replace

    alone = train(_model(), replace(config, seed=1), weights=weights)  # a later run reads the folder the grid filled
    _assert_same_run(results[GridMember("ersm_full", 1)], alone)


def test_unfrozen_grid_trains_each_member_as_alone():
    members = grid_members(["baseline"], [0, 1])
    results = dict(train_grid(_model(freeze=False), TrainConfig(**{**TINY, "epochs": 1}), members))
    alone = train(_model("baseline", freeze=False), TrainConfig(**{**TINY, "epochs": 1, "seed": 1}))
    _assert_same_run(results[GridMember("baseline", 1)], alone)


def test_shared_features_keep_the_two_latest_keys_and_close_their_plans():
    class Plan:
        closed = []

        def __init__(self, name):
            self.name = name

        def close(self):
            Plan.closed.append(self.name)

    shared = SharedFeatures()
    feats, labels = torch.zeros(1, 2, 3, 1, 1), torch.tensor([0, 1])
    shared.put("a", {"train": (feats, labels)}, {"storage": "memory"}, Plan("a"), 1.5)
    shared.put("t", {"test": (feats, labels)}, {}, None, 0.5)
    assert shared.get("b") is None
    splits, info = shared.get("a")  # "a" is now the most recently used
    assert splits["train"][0] is feats and info == {"storage": "memory"}
    shared.put("b", {"train": (feats, labels)}, {"storage": "memory"}, Plan("b"), 2.0)
    assert shared.get("t") is None and shared.get("a") is not None and Plan.closed == []  # "t" went, it had no plan
    shared.put("c", {"train": (feats, labels)}, {}, Plan("c"), 0.0)
    assert Plan.closed == ["b"] and shared.get("b") is None
    assert shared.passes == 4 and shared.seconds == 4.0
    with shared:
        pass
    assert sorted(Plan.closed) == ["a", "b", "c"] and shared.get("a") is None and shared.get("c") is None


def test_grid_members_order_and_names(tmp_path):
    members = grid_members(["l0", "baseline"], [2, 0])
    assert [m.name for m in members] == ["l0-s2", "baseline-s2", "l0-s0", "baseline-s0"]
    assert members[0].path(tmp_path) == tmp_path / "l0-s2.pt"
    assert members[0].path(tmp_path, ".safetensors").name == "l0-s2.safetensors"


@pytest.mark.parametrize("variants, seeds, message", [
    (["ersm_full", "ersm_ful"], [0], "unknown variant 'ersm_ful'.*baseline, dropblock"),
    (["l0", "l0"], [0], "--variants lists l0 more than once"),
    (["l0"], [0, 1, 0], "--seeds lists 0 more than once"),
    (["l0"], [-1], "whole numbers from 0, got -1"),
    (["l0"], [], "at least one variant and one seed"),
])
def test_grid_members_refuses_bad_lists(variants, seeds, message):
    with pytest.raises(ConfigError, match=message):
        grid_members(variants, seeds)


def test_time_left_is_the_mean_member_time_without_the_backbone_pass():
    assert time_left(10.0, 4.0, 0, 3) is None
    # 3 members done in 40 s of which 10 s were the backbone pass: 10 s each, 2 left
    assert time_left(40.0, 10.0, 3, 2) == pytest.approx(20.0)
    assert time_left(5.0, 6.0, 1, 4) == 0.0  # never negative
