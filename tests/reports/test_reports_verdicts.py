"""The report shows what the evaluation wrote, in the words of ersm_eval.verdicts: each model at a
glance first (at chance said before any figure), each verdict once; user strings render literally in
figures; a figure that fails never costs the report or the tables."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from ersm_eval import verdicts
from reports import build_report, load_run
from reports.figures_gallery import Example, plot_mask_gallery
from reports.figures_sparsity import plot_per_class_keep
from reports.figures_style import ranking_order, save_figure


def chance_of(accuracy: float) -> verdicts.ChanceTest:
    """The chance test of conftest's fake runs: 200 images, 5 classes."""
    return verdicts.chance_test(int(round(accuracy * 200)), 200, 5)


class Page(HTMLParser):
    """The page as a sequence of events: ("p", text, class), ("img", alt, ""), ("table", caption, ""),
    ("details", "", ""); and every table's rows of cell texts, by caption."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str, str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._text: list[str] | None = None
        self._class = ""
        self._caption: str | None = None
        self._rows: list[list[str]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("p", "caption"):
            self._text, self._class = [], attrs.get("class") or ""
        elif tag == "img":
            self.events.append(("img", attrs.get("alt", ""), ""))
        elif tag == "details":
            self.events.append(("details", "", ""))
        elif tag == "table":
            self._rows = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "p" and self._text is not None:
            self.events.append(("p", "".join(self._text), self._class))
            self._text = None
        elif tag == "caption" and self._text is not None:
            self._caption = "".join(self._text)
            self.events.append(("table", self._caption, ""))
            self._text = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._rows is not None:
            self._rows.append(self._row)
            self._row = None
        elif tag == "table" and self._rows is not None:
            self.tables[self._caption or f"table {len(self.tables)}"] = self._rows
            self._rows, self._caption = None, None

    def handle_data(self, data):
        for part in (self._text, self._cell):
            if part is not None:
                part.append(data)

    def texts(self, css: str | None = None) -> list[str]:
        """Paragraph texts (of class ``css`` only, when given)."""
        return [t for kind, t, c in self.events if kind == "p" and (css is None or css in c.split())]

    def glance(self, label: str) -> dict[str, list[str]]:
        """The at-a-glance table of model ``label``: finding → [numbers, verdict] (warnings: :meth:`warnings`)."""
        rows = self.tables[f"{label} at a glance"]
        assert rows[0] == ["Finding", "Numbers", "Verdict"]
        return {r[0]: r[1:] for r in rows[1:] if r[0] != "Warning"}

    def warnings(self, label: str) -> list[str]:
        """The warning rows of model ``label``'s at-a-glance table."""
        return [r[1] for r in self.tables[f"{label} at a glance"] if r[0] == "Warning"]


def read_page(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_glance_verdicts_and_sentences_are_the_evaluations(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "run", kinds=("deletion",)))
    page = read_page(build_report([run], tmp_path / "out" / "report.html"))
    summary = run.table("deletion_summary.csv")
    rows = summary[summary["ranking"] != "random"].set_index("ranking")
    assert {"supports", "contradicts", "indistinguishable"} <= set(rows["verdict"])
    glance = page.glance(run.label)
    for ranking, row in rows.iterrows():
        numbers, verdict = glance[f"Deletion, both orders: {ranking.replace('_', ' ')}"]
        assert verdict == verdicts.verdict_words(row["verdict"])
        assert numbers == "symmetric gain (least − most important first) " + verdicts.format_estimate(row["sg"], row["sg_ci_low"], row["sg_ci_high"], "signed")
    assert glance["Accuracy before deletion (k = 0)"][1] == "above chance"
    # the sentences are summary.json's, folded after the glance
    recorded = json.loads((tmp_path / "run" / "summary.json").read_text())["verdict_sentences"]
    shown = page.texts("sentence")
    assert shown[0] == recorded["chance"]
    assert shown[1:6] == [recorded["rankings"][r] for r in ranking_order(rows.index)]


def test_each_verdict_is_stated_once_outside_the_folded_text(tmp_path, run_writer):
    run = load_run(run_writer(tmp_path / "run"))
    html = build_report([run], tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    glance_end = html.index("<details>")
    body = html[glance_end:]
    unfolded = "".join(part.split("</details>", 1)[-1] for part in body.split("<details>"))
    for words in (*(verdicts.verdict_words(v) for v in ("supports", "indistinguishable")), "above chance"):
        assert words in html[:glance_end]
        assert words not in unfolded  # no table or paragraph after the glance repeats a deletion/chance verdict


def test_a_model_at_chance_is_said_to_be_before_any_figure(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", label="Guessing", accuracy=0.20, kinds=("deletion", "sparsity"))
    page = read_page(build_report([load_run(folder)], tmp_path / "out" / "report.html"))
    assert chance_of(0.20).at_chance
    glance = page.glance("Guessing")
    assert glance["Accuracy before deletion (k = 0)"][1] == verdicts.AT_CHANCE
    deletion = [v for k, (_, v) in glance.items() if k.startswith("Deletion, both orders")]
    assert len(deletion) == 5 and set(deletion) == {verdicts.verdict_words("not_testable")}
    kinds = [kind for kind, *_ in page.events]
    assert kinds.index("table") < kinds.index("img")
    # the key figure right after the glance tables: the deletion curves, marked at chance
    first_image = next(alt for kind, alt, _ in page.events if kind == "img")
    assert first_image.startswith("Accuracy against patches removed")


def test_glance_tables_come_first(tmp_path, run_writer):
    folders = [run_writer(tmp_path / "a", label="Baseline", variant="baseline"), run_writer(tmp_path / "b", seed=3)]
    page = read_page(build_report([load_run(f) for f in folders], tmp_path / "out" / "report.html"))
    events = [(kind, text) for kind, text, _ in page.events]
    glances = [i for i, (kind, text) in enumerate(events) if kind == "table" and text.endswith("at a glance")]
    assert len(glances) == 2
    first_figure = next(i for i, (kind, _) in enumerate(events) if kind == "img")
    first_details = next(i for i, (kind, _) in enumerate(events) if kind == "details")
    first_long = next(i for i, (kind, text) in enumerate(events) if kind == "p" and len(text) > 160)
    assert max(glances) < min(first_figure, first_details, first_long)
    assert events[max(glances) + 1][1].startswith("Accuracy against patches removed")  # the key figure next


def test_warnings_for_position_and_uninformative_boxes(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion", "sparsity"), boxes_share=0.75)
    page = read_page(build_report([load_run(folder)], tmp_path / "out" / "report.html"))
    assert page.warnings("ERSM-Full") == [verdicts.position_sentence(0.72, 0.64, 0.97), verdicts.uninformative_boxes_sentence(0.75)]
    # localization: a table with a verdict column, baselines included, no sentence per metric
    rows = page.tables["Localization against the uniform and centre maps (localization.csv)"]
    assert rows[0][-1] == "Verdict"
    loc = load_run(folder).table("localization.csv")
    assert [r[-1] for r in rows[1:]] == [verdicts.verdict_words(v) for v in loc["verdict"]]
    assert not any("localize" in t for t in page.texts())


def test_no_position_warning_when_the_energy_does_not_follow_position(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    summary = json.loads((folder / "summary.json").read_text())
    summary["energy_diagnostics"]["follows_position"] = False
    (folder / "summary.json").write_text(json.dumps(summary))
    page = read_page(build_report([load_run(folder)], tmp_path / "out" / "report.html"))
    assert page.warnings("ERSM-Full") == []
    assert summary["verdict_sentences"]["position"] in page.texts("sentence")  # said once, folded


def test_an_older_folder_is_refused_before_anything_is_written(tmp_path, run_writer):
    from reports import ReportError

    folder = run_writer(tmp_path / "old", kinds=("deletion", "sparsity"), legacy=True)
    with pytest.raises(ReportError, match="written by an older ersm-eval.*re-run the evaluation"):
        build_report([folder], tmp_path / "out" / "report.html")
    assert not (tmp_path / "out").exists()


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
    from reports.html import sections

    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*args, **kwargs):
        raise ValueError("mathtext: unknown symbol")

    monkeypatch.setattr(sections, "plot_deletion_curves", broken)
    with pytest.warns(RuntimeWarning, match="deletion_curves"):
        out = build_report([load_run(folder)], folder / "report.html")
    page = read_page(out)
    assert any("figure 'deletion_curves' could not be drawn (ValueError: mathtext" in w for w in page.texts("warning"))
    assert [alt for kind, alt, _ in page.events if kind == "img"]  # the other figures are there
    assert all((folder / name).read_bytes() == data for name, data in before.items())


def test_the_run_hook_keeps_the_tables_when_the_report_breaks(tmp_path, run_writer, monkeypatch):
    from cli.common import write_report
    from reports.html import page

    folder = run_writer(tmp_path / "run", kinds=("deletion",))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*args, **kwargs):
        raise KeyError("a bug while laying out the page")

    monkeypatch.setattr(page, "summary_blocks", broken)
    write_report(folder)  # a warning, not an exception
    assert not (folder / "report.html").exists()
    assert all((folder / name).read_bytes() == data for name, data in before.items())


def test_classes_are_named_as_given(run_writer, tmp_path):
    run = load_run(run_writer(tmp_path / "run", kinds=("sparsity",), class_names=["a_b", "$c$", "d^e", "f", "g"]))
    assert run.class_names[:3] == ["a_b", "$c$", "d^e"]


def test_paper_table_uses_the_same_verdicts(tmp_path, run_writer):
    from reports import paper_table

    guessing = load_run(run_writer(tmp_path / "g", label="Guessing", accuracy=0.20, kinds=("deletion",)))
    good = load_run(run_writer(tmp_path / "m", label="Model", kinds=("deletion",), seed=4))
    table = paper_table([guessing, good]).set_index("model")
    assert table.loc["Guessing", "at_chance"] is True and table.loc["Guessing", "verdict"] == "not_testable"
    energy = good.table("deletion_summary.csv").set_index("ranking").loc["energy"]
    assert table.loc["Model", "at_chance"] is False and table.loc["Model", "verdict"] == energy["verdict"]
    assert table.loc["Model", "sg_ci_low"] == energy["sg_ci_low"]


def test_header_counts_input_folders_and_provenance_lists_each_once(tmp_path, run_writer):
    from reports.combine import combine_by_checkpoint

    folders = [run_writer(tmp_path / kind, kinds=(kind,), boxes_share=0.9) for kind in ("deletion", "occlusion", "sparsity")]
    runs = combine_by_checkpoint([load_run(f) for f in folders])
    assert len(runs) == 1
    out = build_report(runs, tmp_path / "out" / "report.html")
    html = out.read_text(encoding="utf-8")
    assert "1 model (checkpoints/ersm_full.pt) from 3 run folders" in html
    page = read_page(out)
    prov = [cells[0] for rows in page.tables.values() for cells in rows if len(cells) == 9 and cells[0] != "Folder"]
    assert sorted(prov) == ["../deletion", "../occlusion", "../sparsity"]
    # the combined model reads every folder's record: the deletion run's chance test, the sparsity run's boxes
    glance = page.glance("checkpoints/ersm_full.pt")
    assert glance["Accuracy before deletion (k = 0)"][1] == "above chance"
    assert page.warnings("checkpoints/ersm_full.pt")[-1] == verdicts.uninformative_boxes_sentence(0.9)


def test_provenance_row_from_summary_json(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("sparsity",))
    page = read_page(build_report([load_run(folder)], tmp_path / "out" / "report.html"))
    row = next(cells for rows in page.tables.values() for cells in rows if len(cells) == 9 and cells[0] == "../run")
    assert row[1:8] == ["sparsity", "ERSM-Full", "checkpoints/ersm_full.pt", "ab" * 6, "synthetic / test", "200",
                        "2025-01-01T10:00:00+0000"]


def test_the_models_own_accuracy_leads_its_glance(tmp_path, run_writer):
    folder = run_writer(tmp_path / "run", kinds=("deletion", "sparsity"))
    run = load_run(folder)
    page = read_page(build_report([run], tmp_path / "out" / "report.html"))
    images = run.table("per_image.csv")
    test = verdicts.chance_test(int(images["correct"].sum()), len(images), 5)
    findings = list(page.glance(run.label))
    assert findings[:2] == ["Accuracy of the model as trained", "Accuracy before deletion (k = 0)"]
    numbers, verdict = page.glance(run.label)["Accuracy of the model as trained"]
    assert verdict == verdicts.chance_words(test)
    assert numbers.startswith(verdicts.format_estimate(test.accuracy, test.ci_low, test.ci_high, "percent"))
    assert page.texts("sentence")[0] == verdicts.accuracy_sentence(test, run.label)
