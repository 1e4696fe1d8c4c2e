"""Acceptance: a torchvision ResNet-18 and a timm model, (x, y) loaders, a random external score map,
tables, saved folders that ``ersm-eval report`` renders, and docs/library.md's example run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

import ersm_eval
from cli.main import app

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 8


def _loader(seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(N_IMAGES, 3, 64, 64, generator=g)
    labels = torch.randint(0, 5, (N_IMAGES,), generator=g)
    return DataLoader(TensorDataset(images, labels), batch_size=3)


@pytest.mark.parametrize("kind", ["torchvision", "timm"])
def test_any_model_gives_tables_and_a_folder_that_report_renders(kind, tmp_path):
    torch.manual_seed(0)
    if kind == "torchvision":
        model = ersm_eval.wrap(torchvision.models.resnet18(weights=None, num_classes=5).eval(), layer="layer4")
    else:
        model = timm.create_model("resnet18", pretrained=False, num_classes=5).eval()
    saliency = torch.rand(N_IMAGES, 64, 64, generator=torch.Generator().manual_seed(1))
    result = ersm_eval.evaluate_deletion(model, _loader(0), scores={"external": saliency}, seeds=(0, 1), n_boot=50)

    summary = result.tables["deletion_summary.csv"]
    rankings = list(summary["ranking"])
    assert rankings[-1] == "external" and {"magnitude", "cam", "random"} <= set(rankings)
    assert not {"energy", "unary"} & set(rankings)  # no Energy-Mask Layer: skipped, with a note
    assert any(note.startswith("ranking energy skipped") for note in result.summary.notes)
    curves = result.tables["deletion_curves.csv"]
    assert (curves["n_images"] == N_IMAGES).all() and set(curves["k"]) == {0, 1, 2, 3}
    k0 = curves[curves["k"] == 0]["accuracy"]
    assert k0.nunique() == 1  # nothing deleted yet: every ranking starts at the model's accuracy
    assert result.summary.model.kind == ("module" if kind == "torchvision" else "timm")

    folder = result.save(tmp_path / f"{kind}-deletion")
    assert sorted(p.name for p in folder.glob("*.csv")) == sorted(result.tables)
    pd.testing.assert_frame_equal(pd.read_csv(folder / "deletion_summary.csv")[["ranking", "auc_lerf", "auc_morf", "sg"]],
                                  summary[["ranking", "auc_lerf", "auc_morf", "sg"]].reset_index(drop=True))
    report = tmp_path / "report.html"
    run = CliRunner().invoke(app, ["report", str(folder), "--out", str(report)])
    assert run.exit_code == 0, run.output
    html = report.read_text()
    assert "external" in html and len(html) > 1000


def test_occlusion_and_mask_statistics_folders_render(tmp_path):
    torch.manual_seed(0)
    model = ersm_eval.wrap(torchvision.models.resnet18(weights=None, num_classes=5).eval(), layer="layer4")
    occlusion = ersm_eval.evaluate_occlusion(model, _loader(2), patterns=("random_squares", "center"), severities=(0.3,))
    masks = ersm_eval.mask_statistics(model, _loader(2), n_boot=50)
    folders = [occlusion.save(tmp_path / "occlusion"), masks.save(tmp_path / "masks")]
    assert (folders[1] / "maps.npz").is_file()
    run = CliRunner().invoke(app, ["report", *map(str, folders), "--out", str(tmp_path / "report.html")])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "report.html").stat().st_size > 1000


def test_docs_library_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "library.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12  # the ~10-line example
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {}
    exec(compile(code, "docs/library.md", "exec"), namespace)
    result = namespace["result"]
    assert "gradcam" in set(result.tables["deletion_summary.csv"]["ranking"])
    assert (tmp_path / "runs" / "resnet18-deletion" / "summary.json").is_file()
    run = CliRunner().invoke(app, ["report", "runs/resnet18-deletion", "--out", "report.html"])
    assert run.exit_code == 0, run.output
