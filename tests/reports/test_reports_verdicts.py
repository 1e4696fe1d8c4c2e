"""The report says what ersm_eval.verdicts says, in its words, and says "at chance" before any curve;
user strings render literally in figures; a figure that fails never costs the report or the tables."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from ersm_eval import verdicts
from reports import build_report, load_run
from reports import html as report_html
from reports.figures_gallery import Example, plot_mask_gallery
from reports.figures_sparsity import plot_per_class_keep
from reports.figures_style import ranking_order, save_figure



def chance_of(accuracy: float) -> verdicts.ChanceTest:
    """The chance test of conftest's fake runs: 200 images, 5 classes."""
    return verdicts.chance_test(int(round(accuracy * 200)), 200, 5)


class _Events(HTMLParser):
    """The page as a sequence of events: ("text", text of a <p>, its class) and ("img", alt)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str, str]] = []
        self._p: list[str] | None = None
        self._class = ""
        self.cells: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "p":
            self._p, self._class = [], attrs.get("class") or ""
        elif tag == "img":
            self.events.append(("img", attrs.get("alt", ""), ""))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "p" and self._p is not None:
            self.events.append(("text", "".join(self._p), self._class))
            self._p = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.cells.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._p is not None:
            self._p.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _events(path) -> _Events:
    page = _Events()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_deletion_sentences_are_the_verdicts_modules(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "run", kinds=("deletion",)))
    page = _events(build_report([run], tmp_path / "out" / "report.html"))
    shown = [text for kind, text, css in page.events if kind == "text" and css == "sentence"]
    summary = run.table("deletion_summary.csv")
    test = chance_of(0.80)
    expected = [verdicts.deletion_sentence(row, test, run.label)
                for row in summary[summary["ranking"] != "random"].to_dict("records")]
    assert sorted(shown) == sorted(expected) and len(expected) == 7
    # the verdict column shows each row's verdict as written, for every ranking
    by_ranking = {cells[0]: cells for cells in page.cells if len(cells) == 7 and cells[0] != "Ranking"}
    for row in summary[summary["ranking"] != "random"].to_dict("records"):
        assert by_ranking[row["ranking"].replace("_", " ")][2] == row["verdict"].replace("_", " ")
    assert {"above_random", "below_random", "indistinguishable"} <= set(summary["verdict"])
    chance = [text for kind, text, css in page.events if kind == "text" and "chance" in css.split()]
    assert chance == [verdicts.chance_sentence(test, run.label)]


def test_a_model_at_chance_is_said_to_be_before_any_figure(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", label="Guessing", accuracy=0.20, kinds=("deletion", "sparsity"))
    page = _events(build_report([load_run(folder)], tmp_path / "out" / "report.html"))
    test = chance_of(0.20)
    assert test.at_chance
    sentence = verdicts.chance_sentence(test, "Guessing")
    kinds = [(kind, text) for kind, text, _ in page.events]
    first_image = next(i for i, (kind, _) in enumerate(kinds) if kind == "img")
    assert kinds.index(("text", sentence)) < first_image
    # every ranking is not testable, in the table and in the sentences
    verdict_cells = [cells[2] for cells in page.cells if len(cells) == 7 and cells[0] != "Ranking"]
    assert verdict_cells and set(verdict_cells) == {"not testable"}
    sentences = [text for kind, text, css in page.events if kind == "text" and css == "sentence"]
    rows = load_run(folder).table("deletion_summary.csv").set_index("ranking")
    expected = [verdicts.deletion_sentence({**rows.loc[r].to_dict(), "ranking": r}, test, "Guessing")
                for r in ranking_order(rows.index) if r != "random"]
    assert sentences == expected and len(expected) == 7
    # the deletion section warns that the curves carry no information, before its figure
    warning = next(i for i, (kind, text) in enumerate(kinds) if "curves below carry no information" in text)
    curves = next(i for i, (kind, text) in enumerate(kinds) if kind == "img" and text.startswith("Accuracy against patches"))
    assert warning < curves


def test_older_folder_says_not_measured(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "old", kinds=("deletion", "sparsity"), legacy=True))
    assert run.table("deletion_summary.csv")["auc_diff"].isna().all()
    assert run.table("localization.csv") is None
    page = _events(build_report([run], tmp_path / "out" / "report.html"))
    texts = [text for kind, text, _ in page.events if kind == "text"]
    assert any("not measured" in t and "re-run `ersm-eval deletion`" in t for t in texts)
    rows = [cells for cells in page.cells if len(cells) == 7 and cells[0] != "Ranking"]
    assert rows and all(cells[1] == cells[2] == "not measured" for cells in rows)
    # the largest gap is never shown alone
    assert all(cells[4] == cells[5] == "not measured" for cells in rows)
    # the chance test is still applied, from the k = 0 row of the curves
    assert texts[[t.startswith("ERSM-Full: accuracy before any deletion") for t in texts].index(True)] == \
        verdicts.chance_sentence(chance_of(0.80), "ERSM-Full")


def test_warnings_for_position_and_uninformative_boxes(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion", "sparsity"))
    images = pd.read_csv(folder / "per_image.csv")
    images["object_area_fraction"] = np.where(np.arange(len(images)) % 4 == 0, 0.3, 0.9)  # 75% large
    images.to_csv(folder / "per_image.csv", index=False)
    page = _events(build_report([load_run(folder)], tmp_path / "out" / "report.html"))
    warnings_ = [text for kind, text, css in page.events if kind == "text" and css == "warning"]
    assert verdicts.position_sentence(0.72, 0.64, 0.97) in warnings_
    assert verdicts.uninformative_boxes_sentence(0.75) in warnings_
    # localization comes with its baselines: rows for uniform and centre, none called localizing
    baseline_rows = [cells for cells in page.cells if len(cells) == 6 and "(baseline)" in cells[1]]
    assert {c[1] for c in baseline_rows} == {"uniform (baseline)", "center (baseline)"}
    assert all(c[5] == "baseline" for c in baseline_rows)


def _texts(fig) -> list[Text]:
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_text()]


@pytest.mark.parametrize("name", ["a_b", "$x^2$", "cost_$5^", r"$\frac{$"])
def test_user_strings_render_literally(tmp_path, name):
    classes = pd.DataFrame({"checkpoint": "c", "series": name, "class_index": [0, 1], "class_name": [name, "plain"],
                            "n": [3, 4], "mean_keep": [0.4, 0.6], "accuracy": [0.5, 0.75]})
    fig = plot_per_class_keep(classes)
    texts = _texts(fig)
    hits = [t for t in texts if name in t.get_text()]
    assert any(t.get_text() == name for t in hits)  # the tick label, verbatim (underscores kept)
    assert hits and all(not t.get_parse_math() for t in hits)
    png, svg = save_figure(fig, tmp_path, "classes")  # an invalid math string does not break drawing
    assert png.stat().st_size > 0 and svg.stat().st_size > 0
    maps = {"index": np.array([0]), "image": np.zeros((1, 8, 8, 3), np.uint8), "label": np.array([0]),
            "prediction": np.array([0]), "cam": np.ones((1, 2, 2), np.float32)}
    gallery = plot_mask_gallery(maps, [Example(0, f"true: {name}")], title=f"model {name}")
    texts = _texts(gallery)
    assert any(t.get_text() == f"true: {name}" and not t.get_parse_math() for t in texts)
    save_figure(gallery, tmp_path, "gallery", tight=False)


def test_a_failing_figure_is_left_out_with_a_warning(tmp_path, run_writer, monkeypatch):
    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*args, **kwargs):
        raise ValueError("mathtext: unknown symbol")

    monkeypatch.setattr(report_html, "plot_deletion_curves", broken)
    with pytest.warns(RuntimeWarning, match="deletion_curves"):
        out = build_report([load_run(folder)], folder / "report.html")
    page = _events(out)
    warnings_ = [text for kind, text, css in page.events if kind == "text" and css == "warning"]
    assert any("figure 'deletion_curves' could not be drawn (ValueError: mathtext" in w for w in warnings_)
    assert [alt for kind, alt, _ in page.events if kind == "img"]  # the other figures are there
    assert all((folder / name).read_bytes() == data for name, data in before.items())


def test_the_run_hook_keeps_the_tables_when_the_report_breaks(tmp_path, run_writer, monkeypatch):
    from cli.common import write_report

    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*args, **kwargs):
        raise KeyError("a bug while laying out the page")

    monkeypatch.setattr(report_html, "_summary_blocks", broken)
    write_report(folder)  # a warning, not an exception
    assert not (folder / "report.html").exists()
    assert all((folder / name).read_bytes() == data for name, data in before.items())


def test_classes_are_named_as_given(run_writer, tmp_path):
    run = load_run(run_writer(tmp_path / "run", kinds=("sparsity",), class_names=["a_b", "$c$", "d^e", "f", "g"]))
    assert run.class_names[:3] == ["a_b", "$c$", "d^e"]


def test_uninformative_boxes_recorded_by_the_sparsity_run(tmp_path, run_writer):
    import json

    folder = run_writer(tmp_path / "run", kinds=("sparsity",))
    summary = json.loads((folder / "summary.json").read_text())
    summary["sparsity"] = {"localization": {"measured": True, "uninformative": True, "large_object_share": 0.9}}
    (folder / "summary.json").write_text(json.dumps(summary))
    page = _events(build_report([load_run(folder)], tmp_path / "out" / "report.html"))
    shown = [text for kind, text, css in page.events if kind == "text" and css == "warning"]
    assert verdicts.uninformative_boxes_sentence(0.9) in shown
    first_figure = next(i for i, (kind, alt, _) in enumerate(page.events) if kind == "img" and alt.startswith("Localization"))
    assert page.events.index(("text", verdicts.uninformative_boxes_sentence(0.9), "warning")) < first_figure


def test_paper_table_uses_the_same_verdicts(tmp_path, run_writer):
    from reports import paper_table

    guessing = load_run(run_writer(tmp_path / "g", label="Guessing", accuracy=0.20, kinds=("deletion",)))
    good = load_run(run_writer(tmp_path / "m", label="Model", kinds=("deletion",), seed=4))
    table = paper_table([guessing, good]).set_index("model")
    assert table.loc["Guessing", "at_chance"] is True and table.loc["Guessing", "verdict"] == "not_testable"
    energy = good.table("deletion_summary.csv").set_index("ranking").loc["energy"]
    assert table.loc["Model", "at_chance"] is False and table.loc["Model", "verdict"] == energy["verdict"]
    assert table.loc["Model", "auc_diff_ci_low"] == energy["auc_diff_ci_low"]


def test_header_counts_input_folders_and_provenance_lists_each_once(tmp_path, run_writer):
    from reports.combine import combine_by_checkpoint

    folders = [run_writer(tmp_path / kind, kinds=(kind,)) for kind in ("deletion", "occlusion", "sparsity")]
    runs = combine_by_checkpoint([load_run(f) for f in folders])
    assert len(runs) == 1
    out = build_report(runs, tmp_path / "out" / "report.html")
    html = out.read_text(encoding="utf-8")
    assert "1 model (checkpoints/ersm_full.pt) from 3 run folders" in html
    page = _events(out)
    prov = [cells[0] for cells in page.cells if len(cells) == 9 and cells[0] != "Folder"]
    assert sorted(prov) == ["../deletion", "../occlusion", "../sparsity"]
    assert html.count("<details>") == 3


def _typed_summary(folder, command: str, evaluation: dict) -> dict:
    """A schema-v2 summary.json for a run folder, with the row counts of its CSVs."""
    from ersm_eval.results import ModelInfo, RunSummary

    tables = {p.name: len(pd.read_csv(p)) for p in sorted(folder.glob("*.csv"))}
    model = ModelInfo(kind="ersm", name="compact_cnn", variant="ersm_full", layer="", grid=[4, 4], patch_size=1,
                      n_tokens=16, head_is_linear=True, has_energy=True, has_gate=True, mean=[0.5] * 3, std=[0.25] * 3)
    summary = RunSummary(command=command, label="typed run", n_images=17, class_names=[f"c{i}" for i in range(5)],
                         model=model, settings={}, evaluation=evaluation, tables=tables,
                         checkpoint="ckpt/typed.pt", checkpoint_sha256="ab" * 32, started="2026-01-02T03:04:05",
                         dataset={"dataset": "synthetic", "split": "test"})
    return summary.to_dict()


def test_typed_summary_gives_boxes_and_provenance(tmp_path, run_writer):
    import json

    from reports.tables import typed_summary

    folder = run_writer(tmp_path / "run", kinds=("sparsity",))
    data = _typed_summary(folder, "sparsity", {"localization": {"measured": True, "uninformative": True,
                                                                "large_object_share": 0.85}})
    # a key in an unrelated place is not searched for any more
    data["evaluation"]["elsewhere"] = {"uninformative": False, "large_object_share": 0.1}
    (folder / "summary.json").write_text(json.dumps(data))
    assert typed_summary(data) is not None
    run = load_run(folder)
    assert report_html._recorded_boxes(run.summary) == (True, 0.85)
    out = build_report([run], tmp_path / "out" / "report.html")
    page = _events(out)
    assert verdicts.uninformative_boxes_sentence(0.85) in [t for kind, t, css in page.events if kind == "text" and css == "warning"]
    row = next(cells for cells in page.cells if len(cells) == 9 and cells[0] == "../run")
    assert row[1:8] == ["sparsity", "typed run", "ckpt/typed.pt", "ab" * 6, "synthetic / test", "17", "2026-01-02T03:04:05"]


def test_recorded_boxes_reads_known_places_only():
    assert report_html._recorded_boxes({"sparsity": {"localization": {"uninformative": False,
                                                                       "large_object_share": 0.2}}}) == (False, 0.2)
    # before the schema, only the sparsity block's localization counted; nothing else is searched
    assert report_html._recorded_boxes({"deeply": {"nested": {"uninformative": True, "large_object_share": 0.9}}}) is None
    assert report_html._recorded_boxes({}) is None


def test_the_models_own_accuracy_leads_its_verdicts(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion", "sparsity"))
    run = load_run(folder)
    page = _events(build_report([run], tmp_path / "out" / "report.html"))
    images = run.table("per_image.csv")
    n_classes = len(run.table("per_class_keep.csv"))
    correct = int(images["correct"].astype(str).str.lower().isin(("true", "1")).sum())
    expected = verdicts.accuracy_sentence(verdicts.chance_test(correct, len(images), n_classes), run.label)
    texts = [(kind, text, css) for kind, text, css in page.events]
    shown = [i for i, (kind, text, css) in enumerate(texts) if kind == "text" and "accuracy" in css.split()]
    assert [texts[i][1] for i in shown] == [expected]
    chance = [i for i, (kind, text, css) in enumerate(texts) if kind == "text" and "chance" in css.split()]
    assert shown[0] < chance[0]  # the model's accuracy first, then the deletion protocol's chance test
