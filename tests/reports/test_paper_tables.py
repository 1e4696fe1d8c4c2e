"""paper_tables.md, .tex and .csv from a hand-made study folder."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reports.paper_tables import CSV_COLUMNS, write_paper_tables

ROOT = Path(__file__).resolve().parents[2]


def _write_study(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    groups = pd.DataFrame([
        {"group": g, "checkpoint": f"{g}-{s}", "seed": s, "variant": g, "dataset": "cub_200", "backbone": "resnet50",
         "image_size": 224, "patch_size": 1}
        for g, seeds in (("baseline", (0, 1, 2)), ("ersm_full", (0, 1, 2)), ("l0", (0,))) for s in seeds
    ])
    rows = [
        ("baseline", "accuracy", 0.9123, 0.0081, 3, "above_chance", 3),
        ("baseline", "loss", 0.3, 0.01, 3, "no_verdict", 3),
        ("baseline", "cam_sg", -0.02, 0.004, 3, "contradicts", 3),
        ("ersm_full", "accuracy", 0.905, 0.012, 3, "above_chance", 3),
        ("ersm_full", "loss", 0.35, 0.02, 3, "no_verdict", 3),
        ("ersm_full", "mean_keep", 0.4123, 0.0217, 3, "no_verdict", 3),
        ("ersm_full", "energy_sg", 0.0523, 0.0104, 3, "supports", 2),
        ("l0", "accuracy", 0.88, math.nan, 1, "above_chance", 1),
    ]
    summary = pd.DataFrame([{"group": g, "metric": m, "mean": mean, "std": std, "n_seeds": n, "ci_low": mean - 0.1,
                             "ci_high": mean + 0.1, "verdict": v, "seeds_agreeing": k,
                             "training_variance_measured": n > 1} for g, m, mean, std, n, v, k in rows])
    groups.to_csv(folder / "groups.csv", index=False)
    summary.to_csv(folder / "group_summary.csv", index=False)
    return folder


def test_markdown(tmp_path):
    paths = write_paper_tables(_write_study(tmp_path / "study"))
    assert sorted(paths) == ["paper_tables.csv", "paper_tables.md", "paper_tables.tex"]
    text = paths["paper_tables.md"].read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "## Pilot: accuracy, mean keep and deletion verdict per variant"
    assert "| Variant | Accuracy (%) | Mean keep | Ranking | SG of own ranking | Verdict |" in lines
    assert ("| ersm_full | 90.5 ± 1.2 (3 seeds) | 0.412 ± 0.022 (3 seeds) | energy | +0.052 ± 0.010 (3 seeds) "
            "| supports (2 of 3 seeds) |") in lines
    assert "| baseline | 91.2 ± 0.8 (3 seeds) | – | cam | -0.020 ± 0.004 (3 seeds) | contradicts (3 of 3 seeds) |" in lines
    assert "| l0 | 88.0 (1 seed) | – | – | – | – |" in lines
    assert ("| cub_200 | resnet50 | 224 | 1 | 91.2 ± 0.8 (3 seeds) | 0.300 ± 0.010 (3 seeds) | 90.5 ± 1.2 (3 seeds) "
            "| 0.350 ± 0.020 (3 seeds) |") in lines


def test_latex_escapes_names(tmp_path):
    paths = write_paper_tables(_write_study(tmp_path / "study"))
    tex = paths["paper_tables.tex"].read_text(encoding="utf-8")
    assert (r"ersm\_full & 90.5 $\pm$ 1.2 (3 seeds) & 0.412 $\pm$ 0.022 (3 seeds) & energy & +0.052 $\pm$ 0.010 "
            r"(3 seeds) & supports (2 of 3 seeds) \\") in tex
    assert r"l0 & 88.0 (1 seed) & -- & -- & -- & -- \\" in tex
    assert r"cub\_200 & resnet50 & 224 & 1 &" in tex
    assert r"Accuracy (\%)" in tex and r"ersm\_full loss" in tex
    assert "ersm_full" not in tex and "cub_200" not in tex and "±" not in tex
    assert tex.count(r"\begin{table}") == 2 and r"\label{tab:ersm-pilot}" in tex and r"\label{tab:ersm-backbone}" in tex


def test_csv_has_every_cell_and_its_numbers(tmp_path):
    paths = write_paper_tables(_write_study(tmp_path / "study"))
    table = pd.read_csv(paths["paper_tables.csv"])
    assert tuple(table.columns) == CSV_COLUMNS
    row = table[(table["table"] == "pilot") & (table["row"] == "ersm_full") & (table["column"] == "SG of own ranking")]
    assert row[["cell", "group", "metric", "mean", "std", "n_seeds"]].iloc[0].tolist() == \
        ["+0.052 ± 0.010 (3 seeds)", "ersm_full", "energy_sg", 0.0523, 0.0104, 3]
    verdict = table[(table["row"] == "ersm_full") & (table["column"] == "Verdict")]
    assert verdict["cell"].tolist() == ["supports (2 of 3 seeds)"] and verdict["mean"].isna().all()
    assert len(table) == 3 * 6 + 1 * 8  # every cell of both tables


def test_out_dir_and_bad_folders(tmp_path):
    study = _write_study(tmp_path / "study")
    out = tmp_path / "paper" / "tables"
    paths = write_paper_tables(study, out)
    assert all(p.parent == out for p in paths.values())
    assert not (study / "paper_tables.md").exists()
    with pytest.raises(ValueError, match="study folder not found"):
        write_paper_tables(tmp_path / "nowhere", tmp_path / "never")
    assert not (tmp_path / "never").exists()  # nothing half-written
    (study / "group_summary.csv").unlink()
    with pytest.raises(ValueError, match="has no group_summary.csv"):
        write_paper_tables(study, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="it is a file, not a folder"):
        write_paper_tables(_write_study(tmp_path / "again"), a_file)


def test_study_modules_need_no_torch():
    code = "import sys, ersm_eval.studies, reports.paper_tables; sys.exit('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
