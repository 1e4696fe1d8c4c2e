"""The CLI is a thin face of the API: for the same checkpoint and images, `ersm-eval deletion`,
`occlusion` and `sparsity` write CSVs byte-identical to what evaluate_deletion,
evaluate_occlusion and mask_statistics save from a plain DataLoader; `--scores` maps are
read in the evaluated images' dataset-index order."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset
from typer.testing import CliRunner

import ersm_eval
from cli.main import app
from ersm_core.checkpoint import load_checkpoint
from ersm_core.data import build_dataset, model_transform
from ersm_core.data.subset import dataset_labels, stratified_subset

runner = CliRunner()
LIMIT = 8


def _cli(tmp_path, command, checkpoint, *args):
    out = tmp_path / f"cli-{command}"
    result = runner.invoke(app, [command, str(checkpoint), "--dataset", "synthetic", "--limit", str(LIMIT),
                                 "--batch-size", "4", "--no-report", "--quiet", "--out", str(out), *map(str, args)])
    assert result.exit_code == 0, result.output
    return out


def _loader(checkpoint, with_masks: bool):
    """The CLI's images (the same stratified --limit subset) as a DataLoader of (x, y, extra) tuples."""
    ckpt = load_checkpoint(checkpoint)
    data = build_dataset("synthetic", "test", model_transform(ckpt.model), num_classes=ckpt.config.num_classes)
    indices = stratified_subset(dataset_labels(data), LIMIT, 0)

    def collate(items):
        extra = {"index": torch.tensor([it["index"] for it in items])}
        if with_masks:
            extra.update(mask=torch.stack([it["mask"] for it in items]),
                         has_mask=torch.tensor([bool(it["has_mask"]) for it in items]),
                         box=torch.stack([torch.as_tensor(it["box"]) for it in items]))
        return torch.stack([it["image"] for it in items]), torch.tensor([int(it["label"]) for it in items]), extra

    return ckpt, indices, DataLoader(Subset(data, indices), batch_size=4, collate_fn=collate)


def _same_csvs(cli_dir, api_dir):
    names = sorted(p.name for p in cli_dir.glob("*.csv"))
    assert names and names == sorted(p.name for p in api_dir.glob("*.csv"))
    for name in names:
        assert (cli_dir / name).read_bytes() == (api_dir / name).read_bytes(), name


def test_deletion_cli_and_api_write_identical_csvs_with_external_scores(tmp_path, tiny_checkpoint):
    ckpt, indices, loader = _loader(tiny_checkpoint, with_masks=False)
    grid = tuple(ckpt.model.grid)
    maps = np.random.default_rng(0).standard_normal((LIMIT, *grid)).astype(np.float32)
    np.save(tmp_path / "maps.npy", maps)
    cli_dir = _cli(tmp_path, "deletion", tiny_checkpoint, "--seeds", "0,1", "--steps", "5",
                   "--scores", tmp_path / "maps.npy", "--scores-name", "mine")
    result = ersm_eval.evaluate_deletion(ckpt.model, loader, scores={"mine": maps}, seeds=(0, 1), steps=5,
                                         label=tiny_checkpoint.stem, class_names=ckpt.class_names)
    _same_csvs(cli_dir, result.save(tmp_path / "api-deletion"))
    assert "mine" in set(result.tables["deletion_curves.csv"]["ranking"])
    # row i of the maps is the i-th evaluated image in ascending dataset index: the external order is
    # the maps' argsort, highest first
    npz_result = ersm_eval.evaluate_deletion(ckpt.model, loader, scores={"mine": maps}, rankings=("random",),
                                             seeds=(0,), steps=5, save_token_scores=True)
    tokens = npz_result.arrays["token_scores.npz"]
    assert tokens["index"].tolist() == sorted(indices)
    np.testing.assert_array_equal(tokens["mine"].reshape(LIMIT, -1), maps.reshape(LIMIT, -1))


def test_occlusion_cli_and_api_write_identical_csvs(tmp_path, tiny_checkpoint):
    ckpt, _, loader = _loader(tiny_checkpoint, with_masks=True)
    cli_dir = _cli(tmp_path, "occlusion", tiny_checkpoint, "--severities", "0,0.4", "--fills", "gray,noise",
                   "--patterns", "random_squares,object")
    result = ersm_eval.evaluate_occlusion(ckpt.model, loader, severities=(0, 0.4), fills=("gray", "noise"),
                                          patterns=("random_squares", "object"), label=tiny_checkpoint.stem,
                                          batch_size=4)
    _same_csvs(cli_dir, result.save(tmp_path / "api-occlusion"))


def test_sparsity_cli_and_api_write_identical_csvs(tmp_path, tiny_checkpoint):
    ckpt, _, loader = _loader(tiny_checkpoint, with_masks=True)
    cli_dir = _cli(tmp_path, "sparsity", tiny_checkpoint, "--no-randomization")  # the API's sparsity has no check
    result = ersm_eval.mask_statistics(ckpt.model, loader, label=tiny_checkpoint.stem, class_names=ckpt.class_names)
    _same_csvs(cli_dir, result.save(tmp_path / "api-sparsity"))


@pytest.mark.parametrize("shape, message", [((LIMIT - 1, 4, 4), "holds 7 maps but 8 images are evaluated"),
                                            ((LIMIT, 4), "must be maps")])
def test_scores_file_is_checked(tmp_path, tiny_checkpoint, shape, message):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    result = runner.invoke(app, ["deletion", str(tiny_checkpoint), "--dataset", "synthetic", "--limit", str(LIMIT),
                                 "--scores", str(tmp_path / "bad.npy"), "--quiet", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()
