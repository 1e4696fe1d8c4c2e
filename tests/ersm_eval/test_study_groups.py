"""Groups of checkpoints: equal in config and provenance except the seed, or as the user groups them."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from ersm_eval.studies.groups import checkpoint_fields, checkpoint_seed, group_checkpoints


def _config(variant: str = "ersm_full", **extra) -> dict:
    return {"variant": variant, "backbone": "compact_cnn", "image_size": 64, "patch_size": 1,
            "beta": 0.0 if variant == "ersm_unary" else 1e-3, "mean": [], **extra}


def _prov(seed: int, lr: float = 1e-3, dataset: str = "synthetic", **extra) -> dict:
    return {
        "dataset": dataset, "seed": seed,
        "train_config": {"seed": seed, "lr": lr, "device": "cpu", "workers": 0},
        "versions": {"torch": f"2.{seed}"}, "final_test_acc": 0.5 + seed / 100, "history": [{"epoch": seed}],
        "wall_seconds": 10.0 + seed, "device": f"cuda:{seed}", "feature_cache": {"used": True, "seconds": seed},
        "selection": {"val_indices": [1, 2, 3]}, **extra,
    }


def test_seeds_of_one_experiment_form_one_group_whatever_the_run_details():
    table = group_checkpoints([("c", _config(), _prov(2)), ("a", _config(), _prov(0)), ("b", _config(), _prov(1))])
    assert table["group"].tolist() == ["ersm_full"] * 3
    assert table["checkpoint"].tolist() == ["a", "b", "c"]  # by seed
    assert table["seed"].tolist() == [0, 1, 2]
    assert str(table["seed"].dtype) == "Int64"
    assert list(table.columns[:3]) == ["group", "checkpoint", "seed"]
    # descriptive fields are always shown; nothing differs, so nothing else
    assert list(table.columns[3:]) == ["variant", "dataset", "backbone", "image_size", "patch_size"]


def test_groups_are_named_by_variant_and_the_fields_that_tell_them_apart():
    checkpoints = [
        ("b0", _config("baseline"), _prov(0)), ("b1", _config("baseline"), _prov(1)),
        ("u0", _config("ersm_unary"), _prov(0)),
        ("f0", _config(), _prov(0)), ("f1", _config(), _prov(1)), ("fast", _config(), _prov(0, lr=0.01)),
    ]
    table = group_checkpoints(checkpoints)
    groups = dict(zip(table["checkpoint"], table["group"]))
    # beta differs too (forced to 0 for ersm_unary) but the variant already tells those groups apart
    assert groups == {"b0": "baseline", "b1": "baseline", "u0": "ersm_unary", "f0": "ersm_full, lr=0.001",
                      "f1": "ersm_full, lr=0.001", "fast": "ersm_full, lr=0.01"}
    assert table["group"].tolist() == sorted(table["group"])
    # every field that differs between groups is a column
    assert {"beta", "train_config.lr"} <= set(table.columns)


def test_order_does_not_depend_on_the_input_order():
    checkpoints = [("b0", _config("baseline"), _prov(0)), ("f1", _config(), _prov(1)), ("f0", _config(), _prov(0))]
    first = group_checkpoints(checkpoints)
    again = group_checkpoints(list(reversed(checkpoints)))
    pd.testing.assert_frame_equal(first, again)


def test_group_by_groups_on_the_named_fields_only():
    checkpoints = [("a", _config(), _prov(0)), ("b", _config(), _prov(1, lr=0.01)), ("c", _config("baseline"), _prov(2))]
    table = group_checkpoints(checkpoints, group_by=["variant"])
    assert dict(zip(table["checkpoint"], table["group"])) == {"a": "ersm_full", "b": "ersm_full", "c": "baseline"}
    table = group_checkpoints(checkpoints, group_by=["train_config.lr"])
    assert dict(zip(table["checkpoint"], table["group"])) == {"a": "lr=0.001", "b": "lr=0.01", "c": "lr=0.001"}


def test_unknown_group_by_field_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown group_by field 'lr'; valid fields: .*train_config\.lr.*variant"):
        group_checkpoints([("a", _config(), _prov(0))], group_by=["lr"])
    with pytest.raises(ValueError, match="valid fields"):  # run details are no group fields
        group_checkpoints([("a", _config(), _prov(0))], group_by=["wall_seconds"])


def test_the_same_seed_twice_in_a_group_is_refused():
    with pytest.raises(ValueError, match=r"'a', 'b' of group 'ersm_full' were trained with the same seed 3 \(the same run twice\?\)"):
        group_checkpoints([("a", _config(), _prov(3)), ("b", _config(), _prov(3))])


def test_repeated_names_missing_seeds_and_empty_input_are_refused():
    with pytest.raises(ValueError, match="unique.*repeated: a"):
        group_checkpoints([("a", _config(), _prov(0)), ("a", _config(), _prov(1))])
    unseeded = {k: v for k, v in _prov(0).items() if k not in ("seed", "train_config")}
    with pytest.raises(ValueError, match="'x' records no training seed"):
        group_checkpoints([("x", _config(), unseeded), ("y", _config(), {**unseeded, "train_config": {"seed": 1}})])
    alone = group_checkpoints([("x", _config(), unseeded)])  # a lone checkpoint needs no seed
    assert alone["seed"].isna().all()
    with pytest.raises(ValueError, match="at least one checkpoint"):
        group_checkpoints([])


def test_seed_is_read_from_either_place_and_must_agree():
    assert checkpoint_seed("a", {"seed": 4}) == 4
    assert checkpoint_seed("a", {"train_config": {"seed": 5}}) == 5
    assert checkpoint_seed("a", {}) is None
    with pytest.raises(ValueError, match="two training seeds"):
        checkpoint_seed("a", {"seed": 4, "train_config": {"seed": 5}})
    with pytest.raises(ValueError, match="not a whole number"):
        checkpoint_seed("a", {"seed": 1.5})


def test_fields_flatten_provenance_and_leave_out_run_details():
    fields = checkpoint_fields({"variant": "l0", "dataset": "x"}, _prov(0))
    assert fields["variant"] == "l0"
    assert fields["provenance.dataset"] == "synthetic"  # a config key already names it
    assert fields["train_config.lr"] == 1e-3
    assert fields["selection.val_indices"] == [1, 2, 3]
    assert fields["feature_cache.used"] is True
    for gone in ("seed", "train_config.seed", "versions.torch", "final_test_acc", "history", "wall_seconds", "device",
                 "train_config.device", "train_config.workers", "feature_cache.seconds"):
        assert gone not in fields


def test_long_values_are_named_by_a_short_hash():
    a = _prov(0, selection={"val_indices": list(range(50))})
    b = _prov(0, selection={"val_indices": list(range(1, 51))})
    table = group_checkpoints([("a", _config(), a), ("b", _config(), b)])
    names = table["group"].tolist()
    assert len(set(names)) == 2
    assert all(n.startswith("ersm_full, val_indices=#") and len(n) == len("ersm_full, val_indices=#") + 8 for n in names)


def test_real_checkpoint_provenance(tiny_checkpoint):
    """What `train` records: copies that differ only in the seed and run details form one group."""
    from ersm_core.checkpoint import load_checkpoint

    loaded = load_checkpoint(tiny_checkpoint)
    config, prov = loaded.config.to_dict(), loaded.provenance
    other = copy.deepcopy(prov)
    other["seed"] = other["train_config"]["seed"] = prov["seed"] + 1
    other["final_test_acc"], other["wall_seconds"] = 0.123, 99.0
    other["history"] = []
    table = group_checkpoints([("s0", config, prov), ("s1", config, other)])
    assert table["group"].nunique() == 1
    assert table["seed"].tolist() == [prov["seed"], prov["seed"] + 1]
    assert table["dataset"].tolist() == ["synthetic"] * 2
    changed = copy.deepcopy(other)
    changed["train_config"]["lr"] = prov["train_config"]["lr"] * 10
    table = group_checkpoints([("s0", config, prov), ("s1", config, changed)])
    assert table["group"].nunique() == 2
    assert all(", lr=" in g for g in table["group"])


def test_equal_numbers_of_another_type_are_one_value():
    a = ("a", _config(alpha=1, mean=(0.5, 0.5, 0.5)), _prov(0))
    b = ("b", _config(alpha=1.0, mean=[0.5, 0.5, 0.5]), _prov(1))
    assert group_checkpoints([a, b])["group"].nunique() == 1


def test_checkpoints_must_be_triples():
    with pytest.raises(ValueError, match=r"\(name, config, provenance\), got tuple"):
        group_checkpoints([("a", _config())])
    with pytest.raises(ValueError, match="config and provenance must be mappings"):
        group_checkpoints([("a", _config(), "not a mapping")])
