"""The self-contained HTML report, its figure files and the paper table."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from ersm_eval import verdicts
from reports import ReportError, build_report, load_run, paper_table, write_paper_table
from reports.paper_table import summary_table
from reports.figures_gallery import display_map, failure_examples, plain_examples, plot_mask_gallery
from reports.figures_sparsity import plot_keep_histogram
from reports.figures_style import save_figure

CLAIMS = [
    {"claim": "Energy ranking: deleting its least important tokens first outlasts deleting its most important first", "supported": "yes", "evidence": "15 of 15 steps"},
    {"claim": "Removing the first patches improves accuracy", "supported": "partly", "evidence": "peak +3.5 points"},
    {"claim": "ERSM localizes objects better", "supported": None, "evidence": ""},
    {"claim": "Semantic cliff after patch 55", "supported": False, "evidence": "no cliff"},
]


class _Page(HTMLParser):
    """Collects tags with their attributes and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def comparative(tmp_path_factory, run_writer):
    """Two runs (ERSM with two occlusion checkpoints, and a baseline) in one report with claims."""
    root = tmp_path_factory.mktemp("runs")
    ersm = load_run(run_writer(root / "ersm", occlusion_checkpoints=("checkpoints/ersm_full.pt", "checkpoints/ersm_unary.pt")))
    base = load_run(run_writer(root / "baseline", label="Baseline", variant="baseline", seed=1))
    out = root / "report" / "report.html"
    build_report([ersm, base], out, claims=CLAIMS)
    return out, [ersm, base]


def test_report_is_self_contained(comparative):
    out, _ = comparative
    html = out.read_text(encoding="utf-8")
    page = _parse(html)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "<script" not in html.lower()
    assert "iframe" not in tags and "link" not in tags and "object" not in tags
    images = [a for t, a in page.tags if t == "img"]
    assert len(images) >= 8
    assert all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert all(a.get("alt") for a in images)
    without_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "http" not in without_data.lower()
    assert "//" not in without_data
    for tag, attrs in page.tags:
        assert "src" not in attrs or tag == "img"
        assert "style" not in attrs  # CSS lives in the one <style> block
        href = attrs.get("href")
        if href is not None:
            assert href.startswith("#") or (href.endswith(".csv") and ":" not in href), href
            if not href.startswith("#"):
                assert (out.parent / href).is_file(), href
    assert any(a.get("href", "").endswith("deletion_curves.csv") for _, a in page.tags)


def test_every_figure_is_written_as_png_and_svg(comparative):
    out, _ = comparative
    figures = out.parent / "figures"
    html = out.read_text(encoding="utf-8")
    names = re.findall(r"files: ([\w.-]+\.png), ([\w.-]+\.svg)", html)
    assert len(names) >= 8
    for png, svg in names:
        assert (figures / png).stat().st_size > 0
        assert (figures / svg).stat().st_size > 0
        assert (figures / svg).read_text(encoding="utf-8").lstrip().startswith("<?xml")
    expected = {"deletion_curves", "deletion_summary", "ranking_agreement", "occlusion", "keep_histogram",
                "per_class_keep", "keep_by_correctness", "localization", "gallery_ersm-full",
                "improvements_ersm-full", "failures_distracted_ersm-full"}
    assert expected <= {Path(png).stem for png, _ in names}
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left nothing


def test_comparative_report_mentions_both_runs_and_sections(comparative):
    out, _ = comparative
    page = _parse(out.read_text(encoding="utf-8"))
    text = " ".join(page.text)
    for label in ("ERSM-Full", "Baseline", "ersm_unary"):
        assert label in text
    ids = {a.get("id") for _, a in page.tags}
    assert {"summary", "claims", "deletion", "occlusion", "sparsity", "galleries", "provenance"} <= ids
    assert "ersm_full at a glance" in text and "Baseline at a glance" in text
    assert "Symmetric gain of the true-class prob." in text and "Smallest gap of LeRF to random (points)" in text
    assert "wrong for Baseline and right for ERSM-Full" in text
    # provenance: one row per input folder, the raw summary.json collapsed
    assert "checkpoint_sha256" in text and "ab" * 32 in text and "config.variant" in text
    assert "dataset.split" in text and "versions.numpy" in text
    html = out.read_text(encoding="utf-8")
    # sentences and raw records are folded, never open, and never above the glance tables
    assert html.count("<details>") >= 2 + 2 and "<details open" not in html
    assert html.index("<details>") > html.index("Baseline at a glance")
    assert "from 2 run folders" in text
    assert "SPEC" not in html and "../shared" not in html


def test_claims_render(comparative):
    out, _ = comparative
    page = _parse(out.read_text(encoding="utf-8"))
    text = " ".join(page.text)
    for claim in CLAIMS:
        assert claim["claim"] in text
    verdicts = [a["class"] for t, a in page.tags if t == "span" and "verdict" in a.get("class", "")]
    assert verdicts == ["verdict verdict-yes", "verdict verdict-partly", "verdict verdict-not-measured", "verdict verdict-no"]


def test_sections_for_absent_evaluations_are_omitted(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "only-deletion", kinds=("deletion",)))
    out = build_report([run], tmp_path / "out" / "r.html", figures_dir=tmp_path / "figs", title="Deletion only")
    html = out.read_text(encoding="utf-8")
    ids = {a.get("id") for _, a in _parse(html).tags}
    assert "deletion" in ids
    assert not {"occlusion", "sparsity", "galleries", "claims"} & ids
    assert "<title>Deletion only</title>" in html
    assert (tmp_path / "figs" / "deletion_curves.svg").stat().st_size > 0
    assert not (tmp_path / "out" / "figures").exists()


def test_gallery_for_a_model_without_a_gate(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "base", label="Baseline", variant="baseline", kinds=("sparsity",)))
    assert "keep" not in run.maps
    values, title, faded = display_map(run.maps, 0)
    assert title.startswith("CAM") and 0 <= values.min() and values.max() <= 1
    fig = plot_mask_gallery(run.maps, failure_examples(run, "distracted")[:1], title="t")
    png, svg = save_figure(fig, tmp_path, "g", tight=False)
    assert png.stat().st_size > 0 and svg.stat().st_size > 0
    without = {k: v for k, v in run.maps.items() if k not in ("cam", "mask")}
    assert display_map(without, 0) is None
    save_figure(plot_mask_gallery(without, plain_examples(run, limit=2)), tmp_path, "plain", tight=False)


def test_bad_input_to_build_report(tmp_path, run_writer):
    with pytest.raises(ReportError, match="no runs"):
        build_report([], tmp_path / "r.html")
    run = load_run(run_writer(tmp_path / "run", kinds=("occlusion",)))
    with pytest.raises(ReportError, match="'supported' must be one of"):
        build_report([run], tmp_path / "r.html", claims=[{"claim": "x", "supported": "perhaps"}])
    with pytest.raises(ReportError, match="'claim' key"):
        build_report([run], tmp_path / "r.html", claims=[{"text": "x"}])


def test_duplicate_labels_are_made_unique(tmp_path, run_writer):
    one = load_run(run_writer(tmp_path / "a", kinds=("occlusion",)))
    two = load_run(run_writer(tmp_path / "b", kinds=("occlusion",)))
    html = build_report([one, two], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "ERSM-Full (2)" in html


def test_one_model_in_several_folders_is_one_row(tmp_path, run_writer):
    folders = [run_writer(tmp_path / kind, kinds=(kind,)) for kind in ("deletion", "occlusion", "sparsity")]
    table = paper_table(folders)  # paths are loaded
    assert list(table["model"]) == ["ERSM-Full"]
    row = table.iloc[0]
    assert row["accuracy_source"] == "sparsity"
    assert pd.notna(row["mean_keep"]) and pd.notna(row["auc_energy"]) and pd.notna(row["occlusion_robustness"])


def test_paper_table(comparative, tmp_path):
    _, runs = comparative
    table = paper_table(runs)
    assert list(table["model"]) == ["ersm_full", "ersm_unary", "Baseline"]
    assert {"accuracy", "mean_keep", "auc_energy", "auc_random", "occlusion_robustness"} <= set(table.columns)
    full = table.iloc[0]
    assert full["accuracy_source"] == "sparsity" and 0 < full["accuracy"] < 1
    assert pd.isna(table.iloc[2]["mean_keep"]) and pd.isna(table.iloc[2]["auc_energy"])
    assert table.iloc[1]["accuracy_source"] == "occlusion severity 0"
    md, tex = write_paper_table(table, tmp_path)
    lines = md.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("| Model | Accuracy (%) | At chance | Mean keep | AUC energy")
    assert "| SG energy (LeRF − MoRF) | Verdict |" in lines[0]
    row = summary_table(runs).iloc[0]
    energy = runs[0].table("deletion_summary.csv").set_index("ranking").loc["energy"]
    assert row["gap_ranking"] == "energy" and row["verdict"] == energy["verdict"] == "supports"
    assert row["sg"] == energy["sg"] and row["min_gap_to_random"] == energy["min_gap_to_random"]
    assert f"| {verdicts.verdict_words('supports')} |" in lines[2]
    assert verdicts.format_estimate(energy["sg"], energy["sg_ci_low"], energy["sg_ci_high"], "signed") in lines[2]
    assert set(lines[1]) <= set("|-:")
    assert len([ln for ln in lines if ln.startswith("| ")]) == 1 + len(table)
    latex = tex.read_text(encoding="utf-8")
    assert "\\begin{tabular}" in latex and "\\toprule" in latex and "Accuracy (\\%)" in latex
    assert "ersm\\_full" in latex


def test_figures_are_reproducible(comparative, tmp_path):
    _, runs = comparative
    histogram = runs[0].table("keep_histogram.csv")
    first = save_figure(plot_keep_histogram(histogram), tmp_path / "a", "hist")
    second = save_figure(plot_keep_histogram(histogram), tmp_path / "b", "hist")
    assert first[0].read_bytes() == second[0].read_bytes()
    assert first[1].read_bytes() == second[1].read_bytes()
    assert b"<dc:date>" not in first[1].read_bytes()
