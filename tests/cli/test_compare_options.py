"""``compare`` takes the evaluators' options, can skip evaluations, and its default occlusion grid costs 10 passes per image."""

import inspect
import json

import pytest
from typer.testing import CliRunner

from cli.compare import compare, compare_into
from cli.main import app
from ersm_core.checkpoint import load_checkpoint
from ersm_core.data import build_dataset, model_transform
from ersm_eval.subset import dataset_labels, stratified_subset

runner = CliRunner()


def _default(func, name):
    return inspect.signature(func).parameters[name].default


def test_default_occlusion_grid_costs_ten_passes_per_image(tiny_checkpoint):
    from ersm_eval.occlusion import OcclusionConfig, OcclusionEvaluator, resolve_patterns

    model = load_checkpoint(tiny_checkpoint).model
    config = OcclusionConfig(
        fills=(_default(compare, "occlusion_fills"),),
        patterns=tuple(_default(compare, "occlusion_patterns").split(",")),
        severities=tuple(float(s) for s in _default(compare, "occlusion_severities").split(",")),
        seeds=(int(_default(compare, "occlusion_seeds")),),
    )
    for has_masks, expected in ((True, 10), (False, 4)):
        active, _ = resolve_patterns(config.patterns, has_masks)
        evaluator = OcclusionEvaluator(model, config, model.mean, model.std, active, 8)
        assert evaluator.forward_count(1) == expected
    # the clean image's pass also feeds deletion (feature level) and sparsity in a comparison: 10 per image and model
    # the library entry point has the same defaults as the command
    assert _default(compare_into, "occlusion_patterns") == _default(compare, "occlusion_patterns")
    assert _default(compare_into, "occlusion_severities") == _default(compare, "occlusion_severities")


def test_options_reach_the_evaluators_and_skip_leaves_them_out(tmp_path, tiny_checkpoint, tiny_baseline_checkpoint):
    out = tmp_path / "cmp"
    result = runner.invoke(app, [
        "compare", str(tiny_baseline_checkpoint), str(tiny_checkpoint), "--dataset", "synthetic", "--limit", "10",
        "--subset-seed", "3", "--rankings", "energy,random", "--seeds", "0,1", "--steps", "3",
        "--skip", "occlusion", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert "occlusion" not in names and {"deletion-ersm_full", "sparsity-ersm_full", "report.html"} <= names
    deletion = json.loads((out / "deletion-ersm_full" / "summary.json").read_text())
    sparsity = json.loads((out / "sparsity-ersm_full" / "summary.json").read_text())
    assert deletion["options"]["rankings"] == "energy,random" and deletion["options"]["seeds"] == "0,1"
    assert deletion["options"]["steps"] == "3" and deletion["options"]["subset_seed"] == 3
    # the same stratified subset in both evaluations, one image per synthetic class
    data = build_dataset("synthetic", "test", model_transform(load_checkpoint(tiny_checkpoint).model), num_classes=10)
    expected = stratified_subset(dataset_labels(data), 10, seed=3)
    assert deletion["subset"]["indices"] == sparsity["subset"]["indices"] == expected
    assert sorted(i % 10 for i in expected) == list(range(10))

    result = runner.invoke(app, [
        "compare", str(tiny_baseline_checkpoint), str(tiny_checkpoint), "--dataset", "synthetic", "--limit", "4",
        "--skip", "occlusion", "--skip", "sparsity", "--quiet", "--out", str(tmp_path / "only")])
    assert result.exit_code == 0, result.output
    assert not any(p.name.startswith(("sparsity", "occlusion")) for p in (tmp_path / "only").iterdir())


def test_skip_takes_only_known_names(tmp_path, tiny_checkpoint):
    result = runner.invoke(app, ["compare", str(tiny_checkpoint), "--dataset", "synthetic", "--skip", "deletion",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "occlusion" in result.output
    from ersm_core.errors import ConfigError
    from ersm_eval.pipelines.compare import check_skip

    with pytest.raises(ConfigError, match="--skip takes occlusion or sparsity"):
        check_skip(["deletion"])


def test_checkpoints_of_other_classes_are_refused_before_any_work(tmp_path, tiny_checkpoint):
    import torch

    from ersm_core.checkpoint import save_checkpoint
    from ersm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    other = save_checkpoint(tmp_path / "three.pt", build_model(ModelConfig(num_classes=3, image_size=32)).eval(),
                            ["a", "b", "c"], {"dataset": "synthetic"})
    result = runner.invoke(app, ["compare", str(tiny_checkpoint), str(other), "--dataset", "synthetic", "--limit", "4",
                                 "--quiet", "--out", str(tmp_path / "x")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "compare needs checkpoints trained on the same classes" in text and "has 3 (class 0 is" in text
    assert not (tmp_path / "x").exists()
