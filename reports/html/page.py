"""The self-contained HTML report: each model at a glance, the key figure, then the details.

One file with everything embedded (PNG figures as base64 data URIs, inline CSS, no
JavaScript, no network reference), so it opens as an e-mail attachment. The SVG and PNG
files of every figure are written beside it for papers. Built from run folders alone: no
model is loaded.

The page opens with one table per model (accuracy against chance, each ranking's verdict,
the localization verdict, warnings), then the deletion curves; every verdict is the
evaluation's, in the words of :mod:`ersm_eval.verdicts`, and is stated once. Sentences and
secondary numbers sit folded behind the tables.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import jinja2
import pandas as pd

from ersm_core.errors import ERSMError
from ersm_core.files import atomic_write_text
from ersm_eval.schema import MAPS_NPZ, SUMMARY_JSON
from reports.html.blocks import Figures
from reports.html.detail_tables import summary_blocks
from reports.html.differences import differences_section
from reports.html.glance import model_glance
from reports.html.provenance import claim_rows, provenance
from reports.html.sections import deletion_curves_figure, evaluation_sections, gallery_section
from reports.paper_table import summary_table
from reports.tables import KNOWN_TABLES, ReportError, Run, as_runs, clean_path, model_groups, series_labels, stack, unique_labels

__all__ = ["GENERATOR", "build_report", "is_own_report"]

_TEMPLATE = "report.html.j2"
_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
GENERATOR = '<meta name="generator" content="ersm-eval'  # how a report written by this module starts its head
_FIGURES_MARK = ".ersm-report-figures"  # marker in a figures folder this module created


def is_own_report(path: Path) -> bool:
    """True when ``path`` is an HTML file this module wrote (its head names ersm-eval as generator)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return GENERATOR.encode() in head


def _check_targets(out_html: Path, figures_dir: Path, runs: list[Run]) -> None:
    """Refuse to replace anything this module did not write, or any input of the report."""
    if out_html.is_dir():
        raise ReportError(f"{out_html} is a folder; pass the HTML file to write (e.g. {out_html / 'report.html'})")
    if out_html.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"{out_html}: the report is an HTML file, so its name must end in .html")
    inputs = {f.resolve() for run in runs for f in run.folders}
    for folder in inputs:
        for name in (*KNOWN_TABLES, SUMMARY_JSON, MAPS_NPZ):
            if (folder / name).resolve() == out_html.resolve():
                raise ReportError(f"{out_html} is an input of this report; choose another --out")
    if out_html.exists() and not is_own_report(out_html):
        raise ReportError(f"{out_html} exists and was not written by ersm-eval; choose another --out "
                          "(the report never replaces a file it did not write)")
    if figures_dir.exists():
        if not figures_dir.is_dir():
            raise ReportError(f"the figures folder {figures_dir} is a file; choose another --out or figures folder")
        if figures_dir.resolve() in inputs:
            raise ReportError(f"the figures folder {figures_dir} is an input run folder; choose another --out")
        mine = (figures_dir / _FIGURES_MARK).is_file() or (out_html.exists() and is_own_report(out_html))
        if any(figures_dir.iterdir()) and not mine:
            raise ReportError(f"the figures folder {figures_dir} exists and was not written by ersm-eval; "
                              "choose another --out (the report never replaces files it did not write)")


def build_report(
    runs: list[Run | str | Path],
    out_html: str | Path,
    figures_dir: str | Path | None = None,
    claims: list[dict] | None = None,
    title: str | None = None,
    differences: pd.DataFrame | None = None,
) -> Path:
    """Write every figure (PNG + SVG) and one self-contained HTML report.

    The page opens with each model at a glance (accuracy against chance, every ranking's
    verdict, localization, warnings), all in the words of :mod:`ersm_eval.verdicts`, then the
    deletion curves. A figure that cannot be drawn is left out
    with a warning on the page; it never stops the report.

    Args:
        runs: loaded run folders (:func:`reports.load_run`) or their paths; several give a comparative
            report. Runs sharing a label (one model's deletion, occlusion and sparsity folders) are
            shown as one model.
        out_html: the HTML file, written atomically (temporary name, then rename). An existing
            file is replaced only when it is a report this function wrote.
        figures_dir: where PNG and SVG files go; default ``<out_html parent>/figures``.
        claims: optional list of ``{"claim": str, "supported": one of
            :data:`reports.html.CLAIM_VERDICTS` (or True/False/None), "evidence": str}`` rendered as a
            claims section.
        title: page title; default names the runs.
        differences: a comparison's group_differences.csv (every pair of models on the same images),
            shown as its own section.

    Returns:
        The HTML path.

    Raises:
        ReportError: no runs, a malformed claim, an output that would replace a file this
            function did not write (or an input), or a report that cannot be built (the tables
            it reads are never touched).
    """
    if not runs:
        raise ReportError("no runs to report on; pass at least one run folder")
    runs = as_runs(runs)
    out_html = Path(out_html)
    out_dir = out_html.parent
    figures_folder = Path(figures_dir) if figures_dir is not None else out_dir / "figures"
    _check_targets(out_html, figures_folder, runs)
    rows = claim_rows(claims)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        figures_folder.mkdir(parents=True, exist_ok=True)
        (figures_folder / _FIGURES_MARK).write_text("figures written by ersm-eval's report\n", encoding="utf-8")
    except OSError as err:
        raise ReportError(f"cannot write the report under {out_dir}: {err.strerror or err}; choose another --out") from None
    figures = Figures(figures_folder)
    try:
        html = _render(runs, figures, out_dir, rows, title, differences)
    except ERSMError:
        raise
    except Exception as err:  # noqa: BLE001 - the report is a by-product: say so, never lose the tables
        raise ReportError(f"the report could not be built ({type(err).__name__}: {err}); the tables are unaffected") from err
    atomic_write_text(out_html, html)  # temporary name, then rename; the file follows the user's umask
    return out_html


def _render(runs: list[Run], figures: Figures, out_dir: Path, claims: list[dict[str, str]], title: str | None,
            differences: pd.DataFrame | None = None) -> str:
    """The page's HTML; figures are saved as they are drawn."""
    runs = unique_labels(runs)
    labels = series_labels(runs)
    groups = model_groups(runs, labels)
    tables = {name: stack(runs, name, labels) for name in KNOWN_TABLES}
    glances = [model_glance(label, group, tables) for label, group in groups.items()]
    key_figure = deletion_curves_figure(tables, figures, {g.label for g in glances if g.at_chance})
    sections = evaluation_sections(tables, figures, {g.label for g in glances if g.at_chance})
    gallery = gallery_section(runs, figures)
    if gallery is not None:
        sections.append(gallery)
    compared = differences_section(differences)
    if compared is not None:
        sections.append(compared)
    try:
        version = metadata.version("ersm-eval")
    except metadata.PackageNotFoundError:
        version = "unknown"
    sources = provenance(runs, out_dir)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(_TEMPLATE).render(
        title=title or "ERSM evaluation report: " + ", ".join(groups),
        models=list(groups),
        n_folders=len(sources),
        glances=glances,
        key_figure=key_figure,
        summary=summary_blocks(summary_table(runs, labels)),
        claims=claims,
        sections=sections,
        figure_failures=figures.failures,
        provenance=sources,
        figures_dir=clean_path(os.path.relpath(figures.folder.resolve(), out_dir.resolve())),
        version=version,
    )
