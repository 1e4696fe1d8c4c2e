"""`ersm-eval sparsity`: tables, maps.npz, non-ERSM models and datasets without masks."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from ersm_eval.schema import TABLES
from ersm_eval.verdicts import uninformative_boxes_sentence

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _run(*args):
    return runner.invoke(app, ["sparsity", *map(str, args)])


@pytest.fixture(scope="module")
def chosen(tiny_checkpoint):
    """The 12 test images --limit 12 evaluates (the seeded, class-stratified subset)."""
    from ersm_core.checkpoint import load_checkpoint
    from ersm_eval.context import load_eval_dataset

    return load_eval_dataset(load_checkpoint(tiny_checkpoint), "synthetic", "test", limit=12)[1]


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoint, tmp_path_factory, chosen):
    out = tmp_path_factory.mktemp("sp") / "run"
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--limit", "12", "--out", out, "-b", "5",
                  "--gallery-indices", chosen[-1], "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_writes_every_table_with_the_schema(run_dir, tiny_checkpoint, chosen):
    out, output = run_dir
    for name in ("sparsity_summary.csv", "keep_histogram.csv", "per_class_keep.csv", "per_image.csv", "localization.csv"):
        table = pd.read_csv(out / name, keep_default_na=False, na_values=["", "nan"])
        assert list(table.columns[: len(TABLES[name])]) == TABLES[name], name
        assert (table["checkpoint"] == tiny_checkpoint.stem).all()
    summary = pd.read_csv(out / "sparsity_summary.csv", keep_default_na=False)
    maps = set(summary["map"])
    assert maps == {"", "keep", "energy", "cam"}
    for m in ("keep", "energy", "cam"):
        assert {"box_accuracy", "mass_in_object", "iou"} <= set(summary.loc[summary["map"] == m, "metric"])
    per_image = pd.read_csv(out / "per_image.csv", keep_default_na=False)
    assert per_image["index"].tolist() == chosen and len(chosen) == 12
    assert set(per_image["failure"]) <= {"", "focused", "distracted", "high_confidence"}
    info = json.loads((out / "summary.json").read_text())
    assert info["class_names"] and info["label"] == tiny_checkpoint.stem
    assert info["evaluation"]["maps"] == ["keep", "energy", "cam"] and chosen[-1] in info["evaluation"]["gallery_indices"]
    assert "localization" not in " ".join(info["notes"])
    assert "Localization" in output and "mean_keep" in output
    loc = pd.read_csv(out / "localization.csv", keep_default_na=False, na_values=["", "nan"])
    assert set(loc["map"]) == {"keep", "energy", "cam", "uniform", "center"}
    assert (loc.loc[loc["map"].isin(["uniform", "center"]), "verdict"] == "baseline").all()
    assert set(loc.loc[~loc["map"].isin(["uniform", "center"]), "verdict"]) <= {"localizes", "does_not_localize"}
    area = summary.loc[summary["metric"] == "object_area_fraction", "value"].item()
    assert loc.loc[(loc["map"] == "uniform") & (loc["metric"] == "mass_in_object"), "value"].item() == area
    localization = info["evaluation"]["localization"]
    assert localization["measured"] and localization["images"] == 12 and not localization["uninformative"]
    assert "localization.csv" in info["tables"]
    # the console shows each real map against the better baseline, with the verdict's words
    text = " ".join(output.split())
    for _, row in loc[loc["metric"].isin(["mass_in_object", "pointing_game"]) & (loc["verdict"] != "baseline")].iterrows():
        assert f"{row['metric']} {row['value']:.3f}" in text  # each headline row printed
    verdicts = loc.loc[(loc["verdict"] != "baseline") & loc["metric"].isin(["mass_in_object", "iou@0.5",
                                                                           "box_accuracy", "pointing_game"]), "verdict"]
    assert text.count("does not localize") == (verdicts == "does_not_localize").sum()
    # the only warnings are the randomization check's, one per map that ignores its own module's re-initialization
    randomized = pd.read_csv(out / "map_randomization.csv")
    assert set(randomized["randomized"]) == {"head", "spatial", "backbone_last"}
    assert set(randomized["map"]) == {"keep", "energy", "cam"}
    warned = [m for m in ("keep", "energy", "cam") if f"Warning: the {m} map does not depend" in text]
    own = {"keep": "spatial", "energy": "spatial", "cam": "head"}
    for m in ("keep", "energy", "cam"):
        rho = randomized[(randomized["map"] == m) & (randomized["randomized"] == own[m])]["spearman"].item()
        assert (m in warned) == (rho >= 0.5), m
    assert text.count("Warning") == len(warned)


def test_maps_npz_holds_the_gallery(run_dir, chosen):
    out, _ = run_dir
    info = json.loads((out / "summary.json").read_text())
    with np.load(out / "maps.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == {"index", "image", "label", "prediction", "keep", "energy", "cam", "mask"}
    n = len(arrays["index"])
    assert arrays["index"].tolist() == info["evaluation"]["gallery_indices"] and arrays["index"][:8].tolist() == chosen[:8]
    assert arrays["image"].shape == (n, 64, 64, 3) and arrays["image"].dtype == np.uint8
    assert arrays["keep"].shape == arrays["cam"].shape == (n, 4, 4) and arrays["mask"].shape == (n, 64, 64)


def test_baseline_gets_cam_localization_only(tiny_baseline_checkpoint, tmp_path):
    out = tmp_path / "run"
    result = _run(tiny_baseline_checkpoint, "--dataset", "synthetic", "--limit", "6", "--out", out, "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert "no keep map" in _text(result)
    summary = pd.read_csv(out / "sparsity_summary.csv", keep_default_na=False)
    assert set(summary["map"]) == {"", "cam"} and "box_accuracy" in set(summary["metric"])
    assert not (out / "keep_histogram.csv").exists()
    with np.load(out / "maps.npz") as npz:
        assert "keep" not in npz.files and "cam" in npz.files


def _class_names(checkpoint) -> list[str]:
    from ersm_core.checkpoint import load_checkpoint

    return list(load_checkpoint(checkpoint).class_names)


def test_dataset_without_masks_says_so_and_computes_the_rest(tmp_path):
    import torch

    from ersm_core.checkpoint import save_checkpoint
    from ersm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    names = [f"c{k}" for k in range(10)]  # image folders list their classes in sorted order
    checkpoint = save_checkpoint(tmp_path / "m.pt", build_model(ModelConfig(num_classes=10, image_size=64)).eval(), names)
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for name in names:
            (root / split / name).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / split / name / "x.png")
    out = tmp_path / "run"
    result = _run(checkpoint, "--dataset", "imagefolder", "--data-root", root, "--out", out, "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert "localization not measured" in _text(result) and "no object masks or boxes" in _text(result)
    assert not (out / "localization.csv").exists()
    summary = pd.read_csv(out / "sparsity_summary.csv", keep_default_na=False)
    assert {"mean_keep", "n_components", "neighbour_agreement", "accuracy"} <= set(summary["metric"])
    assert not summary["metric"].isin(["box_accuracy", "iou", "mass_in_object"]).any()
    with np.load(out / "maps.npz") as npz:
        assert "mask" not in npz.files
    info = json.loads((out / "summary.json").read_text())
    assert any("localization not measured" in n for n in info["notes"])
    assert info["evaluation"]["localization"]["measured"] is False


def _cub_with_boxes(root, names, boxes, size=64):
    """A CUB-200-2011 folder with the given class names and test images with the given boxes (x, y, w, h)."""
    folder = root / "CUB_200_2011"
    rng = np.random.default_rng(0)
    lines = {"images": [], "train_test_split": [], "image_class_labels": [], "bounding_boxes": []}
    for i, box in enumerate(boxes, start=1):
        rel = f"{i:03d}.{names[i % 10]}/img_{i}.png"
        (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "images" / rel)
        lines["images"].append(f"{i} {rel}")
        lines["train_test_split"].append(f"{i} 0")
        lines["image_class_labels"].append(f"{i} {i % 10 + 1}")
        lines["bounding_boxes"].append(f"{i} " + " ".join(f"{v:.1f}" for v in box))
    for name, content in lines.items():
        (folder / f"{name}.txt").write_text("\n".join(content) + "\n")
    (folder / "classes.txt").write_text("".join(f"{k + 1} {k + 1:03d}.{n}\n" for k, n in enumerate(names)))
    return folder


def test_boxes_covering_the_image_make_localization_uninformative(tiny_checkpoint, tmp_path):
    whole, small = (0, 0, 64, 64), (8, 8, 16, 16)
    root = _cub_with_boxes(tmp_path / "cub", _class_names(tiny_checkpoint), [whole, whole, whole, small])
    out = tmp_path / "run"
    result = _run(tiny_checkpoint, "--dataset", "cub", "--data-root", root, "--out", out, "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    sentence = uninformative_boxes_sentence(0.75)
    assert f"Warning: {sentence}" in _text(result)
    info = json.loads((out / "summary.json").read_text())
    assert sentence in info["notes"]
    assert info["evaluation"]["localization"]["uninformative"] is True
    assert info["evaluation"]["localization"]["large_object_share"] == 0.75
    assert (out / "localization.csv").exists()  # still measured, and said to say nothing


def test_bad_inputs(tiny_checkpoint, run_dir, tmp_path):
    out, _ = run_dir
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--out", out, "--quiet")
    assert result.exit_code == 2 and "--overwrite" in _text(result)
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--out", tmp_path / "x", "--gallery-indices", "a", "--quiet")
    assert result.exit_code == 2 and "--gallery-indices" in _text(result)
    result = _run(tiny_checkpoint, "--dataset", "nosuch", "--out", tmp_path / "y", "--quiet")
    assert result.exit_code == 2 and "synthetic" in _text(result)
