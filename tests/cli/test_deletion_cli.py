"""`ersm-eval deletion`: outputs, skipped rankings, batch-size invariance and bad inputs."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.main import app
from ersm_eval.schema import TABLES

runner = CliRunner()
TABLE_NAMES = ["deletion_curves.csv", "deletion_summary.csv", "deletion_tests.csv", "ranking_agreement.csv"]


def _run(*args):
    return runner.invoke(app, ["deletion", *map(str, args)])


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("del") / "run"
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--limit", "16", "--seeds", "0,1", "--out", out,
                  "--save-token-scores", "--no-report", "--quiet", "-b", "7")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_writes_every_table_and_the_summary(run_dir, tiny_checkpoint):
    out, output = run_dir
    for name in TABLE_NAMES:
        table = pd.read_csv(out / name)
        assert list(table.columns) == TABLES[name], name
        assert (table.checkpoint == tiny_checkpoint.stem).all()
    curves = pd.read_csv(out / "deletion_curves.csv")
    assert set(curves.ranking) == {"energy", "unary", "magnitude", "cam", "center", "random"}
    for ranking in ("energy", "unary", "magnitude", "cam", "center"):  # every non-random ranking in both orders
        assert set(curves[curves.ranking == ranking].order) == {"morf", "lerf"}, ranking
    assert set(curves[curves.ranking == "random"].order) == {"random"}
    assert sorted(curves.k.unique()) == list(range(16)) and (curves.n_images == 16).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint_sha256"] and summary["n_images"] == 16 and summary["label"] == tiny_checkpoint.stem
    assert summary["settings"]["rescale"] is True and summary["settings"]["soft_gate"] is False
    assert "command_line" in summary and "versions" in summary and summary["run_seconds"] >= 0
    assert summary["options"]["no_report"] is True
    with np.load(out / "token_scores.npz", allow_pickle=False) as npz:
        index = npz["index"].tolist()  # --limit draws a seeded, class-stratified subset
        assert npz["energy"].shape == (16, 16) and len(set(index)) == 16 and index == sorted(index)
    assert not (out / "report.html").exists()
    assert "energy" in output and "SG = LeRF" in output and "MoRF" in output  # the terminal summary
    text = " ".join(output.split())
    for match in re.finditer(r"(above|below) random", text):  # never without the order it speaks of
        assert re.search(r"LeRF|MoRF|least important first|most important first",
                         text[max(0, match.start() - 300): match.end() + 300]), text


def test_summary_json_carries_the_chance_test_and_the_verdicts(run_dir):
    out, output = run_dir
    summary = json.loads((out / "summary.json").read_text())
    table = pd.read_csv(out / "deletion_summary.csv").set_index("ranking")
    curves = pd.read_csv(out / "deletion_curves.csv")
    chance = summary["chance_test"]
    k0 = curves[(curves.k == 0) & (curves.ranking == "energy")].iloc[0]
    assert chance["accuracy"] == pytest.approx(k0.accuracy) and chance["n_images"] == 16
    assert chance["chance"] == pytest.approx(1 / 10) and chance["n_classes"] == 10
    assert chance["at_chance"] == (chance["ci_low"] <= 0.1 <= chance["ci_high"])
    compared = [r for r in table.index if r != "random"]
    assert summary["verdicts"] == {r: table.loc[r, "verdict"] for r in compared}
    assert set(summary["verdict_sentences"]["rankings"]) == set(compared)
    assert pd.isna(table.loc["random", "verdict"]) and np.isnan(table.loc["random", "auc_diff_lerf"])
    for r in compared:  # every verdict follows the rule from the unrounded interval of the symmetric gain
        low, high = table.loc[r, "sg_ci_low"], table.loc[r, "sg_ci_high"]
        expected = ("not_testable" if chance["at_chance"] else "supports" if low > 0
                    else "contradicts" if high < 0 else "indistinguishable")
        assert table.loc[r, "verdict"] == expected
    diag = pd.read_csv(out / "energy_diagnostics.csv")
    assert diag.metric.tolist() == ["pairwise_share", "spearman_center", "spearman_neighbours"]
    assert set(summary["energy_diagnostics"]) >= set(diag.metric)
    if chance["at_chance"]:  # said before the table
        assert output.index("Model at chance") < output.index("SG = LeRF")


def test_sg_and_auc_diff_equal_the_areas_of_the_written_curves(run_dir):
    out, _ = run_dir
    curves = pd.read_csv(out / "deletion_curves.csv")
    table = pd.read_csv(out / "deletion_summary.csv").set_index("ranking")

    def area(ranking, order):  # seed-mean curve, then the normalized trapezoid
        rows = curves[(curves.ranking == ranking) & (curves.order == order)]
        mean = rows.groupby("fraction_removed")["accuracy"].mean()
        x, y = mean.index.to_numpy(), mean.to_numpy()
        return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))

    for ranking in ("energy", "unary", "magnitude", "center", "cam"):
        lerf, morf, rand = area(ranking, "lerf"), area(ranking, "morf"), area("random", "random")
        assert table.loc[ranking, "sg"] == pytest.approx(lerf - morf, abs=1e-9)
        assert table.loc[ranking, "auc_lerf"] == pytest.approx(lerf, abs=1e-9)
        assert table.loc[ranking, "auc_morf"] == pytest.approx(morf, abs=1e-9)
        assert table.loc[ranking, "auc_diff_lerf"] == pytest.approx(lerf - rand, abs=1e-9)
        assert table.loc[ranking, "auc_diff_morf"] == pytest.approx(morf - rand, abs=1e-9)
        assert table.loc[ranking, "sg_ci_low"] <= table.loc[ranking, "sg"] <= table.loc[ranking, "sg_ci_high"]
        assert table.loc[ranking, "auc_diff_lerf_ci_low"] <= table.loc[ranking, "auc_diff_lerf"]
    sg_center = table.loc["energy", "sg"] - table.loc["center", "sg"]
    assert table.loc["energy", "sg_minus_center"] == pytest.approx(sg_center, abs=1e-9)


def test_agreement_compares_the_lerf_orders(run_dir):
    from ersm_eval.agreement import spearman_orders

    out, _ = run_dir
    agreement = pd.read_csv(out / "ranking_agreement.csv")
    row = agreement[(agreement.ranking_a == "energy") & (agreement.ranking_b == "center")].iloc[0]
    with np.load(out / "token_scores.npz", allow_pickle=False) as npz:
        names = npz["curve_names"].tolist()
        orders = npz["orders"]
    rho = spearman_orders(orders[:, names.index("energy_lerf")], orders[:, names.index("center_lerf")])
    assert row.spearman_mean == pytest.approx(rho.mean(), abs=1e-9)
    diag = pd.read_csv(out / "energy_diagnostics.csv").set_index("metric")["value"]
    assert 0 <= diag["pairwise_share"] <= 1 and -1 <= diag["spearman_neighbours"] <= 1


def test_batch_sizes_give_the_same_tables(run_dir, tiny_checkpoint, tmp_path):
    out, _ = run_dir
    for bs in (1, 32):
        other = tmp_path / f"bs{bs}"
        result = _run(tiny_checkpoint, "--dataset", "synthetic", "--limit", "16", "--seeds", "0,1", "--out", other,
                      "--no-report", "--quiet", "-b", bs)
        assert result.exit_code == 0, result.output
        for name in TABLE_NAMES:
            a, b = pd.read_csv(out / name), pd.read_csv(other / name)
            exact = [c for c in a.columns if c != "mean_true_prob"]
            pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
            if "mean_true_prob" in a:
                np.testing.assert_allclose(a.mean_true_prob, b.mean_true_prob, rtol=1e-5)


def test_baseline_skips_energy_rankings_and_says_why(tiny_baseline_checkpoint, tmp_path):
    result = _run(tiny_baseline_checkpoint, "--dataset", "synthetic", "--limit", "6", "--steps", "4", "--seeds", "0",
                  "--out", tmp_path / "b", "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert "Skipped ranking energy" in result.output and "baseline" in result.output
    curves = pd.read_csv(tmp_path / "b" / "deletion_curves.csv")
    assert set(curves.ranking) == {"magnitude", "cam", "center", "random"}
    assert sorted(curves.k.unique()) == [0, 5, 10, 15]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert set(summary["evaluation"]["skipped_rankings"]) == {"energy", "unary"}
    assert not (tmp_path / "b" / "energy_diagnostics.csv").exists()  # no energies, no diagnostics
    assert "no Energy-Mask Layer" in summary["energy_diagnostics"] and "no energy diagnostics" in result.output


def test_input_level(tiny_checkpoint, tmp_path):
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--limit", "4", "--steps", "3", "--seeds", "0",
                  "--rankings", "energy,random", "--level", "input", "--fill", "blur", "--out", tmp_path / "i",
                  "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(tmp_path / "i" / "deletion_curves.csv")
    assert sorted(curves.k.unique()) == [0, 8, 15]


def _fails(result, pattern):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert pattern in result.output, result.output


def test_missing_checkpoint(tmp_path):
    _fails(_run(tmp_path / "nope.pt", "--dataset", "synthetic", "--out", tmp_path / "o"), "checkpoint not found")


def test_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    _fails(_run(bad, "--dataset", "synthetic", "--out", tmp_path / "o"), "not")
    assert not (tmp_path / "o").exists()


def test_class_count_differs(tiny_checkpoint, tmp_path):
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", (32, 32), (100, 50 + c, 20)).save(root / split / cls / "a.png")
    _fails(_run(tiny_checkpoint, "--dataset", "imagefolder", "--data-root", root, "--out", tmp_path / "o"),
           "has 2 classes")


def test_unknown_ranking_lists_valid_names(tiny_checkpoint, tmp_path):
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--rankings", "energy,gradcam", "--out", tmp_path / "o")
    _fails(result, "unknown ranking 'gradcam'")
    assert "magnitude_desc" in result.output and "energy_reversed" in result.output


def test_existing_output_folder_is_refused_unless_overwrite(tiny_checkpoint, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    _fails(_run(tiny_checkpoint, "--dataset", "synthetic", "--out", out), "--overwrite")
    assert (out / "keep.txt").exists()
    (out / ".ersm-eval-output").write_text('{"tool": "ersm-eval"}')  # --overwrite replaces only ersm-eval's folders
    result = _run(tiny_checkpoint, "--dataset", "synthetic", "--limit", "3", "--steps", "2", "--seeds", "0",
                  "--out", out, "--overwrite", "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    assert not (out / "keep.txt").exists() and (out / "deletion_curves.csv").exists()


def test_bad_option_values(tiny_checkpoint, tmp_path):
    _fails(_run(tiny_checkpoint, "--dataset", "synthetic", "--steps", "many", "--out", tmp_path / "o"), "--steps")
    _fails(_run(tiny_checkpoint, "--dataset", "synthetic", "--level", "input", "--soft-gate", "--out", tmp_path / "o"),
           "--level feature only")
