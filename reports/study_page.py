"""The study page: study.html from a study folder's tables alone (never a model).

One deletion-curve figure per group (each ranking's mean curve over the group's
seeds, with a band from the seeds' lowest to highest curve), the group table with
its sentences, the pairwise differences, and a link to every checkpoint's own
report (``runs/<checkpoint>/report.html``, written by :func:`write_member_reports`).
Every sentence comes from :mod:`ersm_eval.studies.verdicts`.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pandas as pd

from ersm_core.files import atomic_write_text
from ersm_eval.studies import DIFFERENCES_FILE, GROUPS_FILE, SUMMARY_FILE, difference_sentence, group_sentence, read_study_tables
from reports.figures_style import new_figure, ranking_order, ranking_style, save_figure

__all__ = ["STUDY_HTML", "write_study_outputs", "write_member_reports", "group_curve_figure", "write_study_page"]

STUDY_HTML = "study.html"
RUNS_DIR = "runs"

_TEMPLATE = jinja2.Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.2rem .5rem}
img{max-width:100%}</style></head><body>
<h1>{{ title }}</h1>
<h2>Groups</h2>
<table><tr><th>group</th><th>checkpoint</th><th>seed</th><th>report</th></tr>
{% for m in members %}<tr><td>{{ m.group }}</td><td>{{ m.checkpoint }}</td><td>{{ m.seed }}</td>
<td>{% if m.link %}<a href="{{ m.link }}">report</a>{% else %}–{% endif %}</td></tr>
{% endfor %}</table>
{% for g in groups %}<h2>{{ g.name }}</h2>
{% if g.figure %}<img src="{{ g.figure }}" alt="deletion curves of {{ g.name }}">{% endif %}
<ul>{% for s in g.sentences %}<li>{{ s }}</li>{% endfor %}</ul>{% endfor %}
<h2>Group table</h2>{{ summary_table | safe }}
<h2>Differences between groups</h2>
{% if differences %}<ul>{% for s in differences %}<li>{{ s }}</li>{% endfor %}</ul>{{ differences_table | safe }}
{% else %}<p>One group: nothing to compare.</p>{% endif %}
</body></html>
""")


def write_study_outputs(folder: Path, run_folders: dict[str, list[Path]]) -> list[str]:
    """Each checkpoint's report.html, study.html and the paper tables of the study folder ``folder``.

    A page that cannot be built is a warning (returned, one line each): the tables are the result."""
    from ersm_core.errors import ERSMError
    from reports.paper_tables import write_paper_tables

    warnings = []
    for what, write in (("checkpoint reports", lambda: write_member_reports(run_folders)),
                        ("study.html", lambda: write_study_page(folder)),
                        ("paper tables", lambda: write_paper_tables(folder))):
        try:
            write()
        except (ERSMError, ValueError) as err:
            warnings.append(f"{what} not written: {err}")
    return warnings


def write_member_reports(run_folders: dict[str, list[Path]]) -> dict[str, Path]:
    """Each checkpoint's own report.html beside its result folders (``runs/<checkpoint>/report.html``)."""
    from reports import build_report, load_run
    from reports.combine import combine_by_checkpoint

    written = {}
    for label, folders in run_folders.items():
        if not folders:
            continue
        parent = Path(folders[0]).parent
        runs = combine_by_checkpoint([load_run(f) for f in folders])
        written[label] = build_report(runs, parent / "report.html", figures_dir=parent / "figures", title=label)
    return written


def group_curve_figure(curves: dict[str, pd.DataFrame], group: str, out_dir: Path) -> Path | None:
    """Mean deletion curve over the group's seeds per ranking, with the seeds' min–max band.

    Args:
        curves: checkpoint → its deletion_curves.csv (the group's members).
        group: the group's name (title and file name).
        out_dir: where the PNG and SVG go.
    """
    frames = []
    for checkpoint, table in curves.items():
        mean = table.groupby(["ranking", "fraction_removed"], as_index=False)["accuracy"].mean()  # random: over seeds
        frames.append(mean.assign(member=checkpoint))
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    fig = new_figure(5.5, 3.6)
    ax = fig.add_subplot()
    for ranking in ranking_order(data["ranking"].unique()):
        stats = data[data["ranking"] == ranking].groupby("fraction_removed")["accuracy"].agg(["mean", "min", "max"])
        style = ranking_style(ranking)
        ax.plot(stats.index, stats["mean"], label=style.label, color=style.colour, linestyle=style.linestyle)
        ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2, color=style.colour, linewidth=0)
    ax.set_xlabel("fraction of tokens deleted")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{group}: mean over {len(curves)} seed{'s' if len(curves) != 1 else ''} (band: min–max)")
    ax.legend(fontsize="small")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in group)
    png, _ = save_figure(fig, out_dir, f"study_curves_{safe}")
    return png


def write_study_page(folder: str | Path, title: str | None = None) -> Path:
    """study.html (and figures/) of a study folder, from its tables."""
    folder = Path(folder)
    tables = read_study_tables(folder)
    groups, summary, differences = tables[GROUPS_FILE], tables[SUMMARY_FILE], tables[DIFFERENCES_FILE]
    members, blocks = [], []
    for name, rows in groups.groupby("group", sort=False):
        curves = {}
        for _, row in rows.iterrows():
            run = folder / RUNS_DIR / str(row["checkpoint"])
            report = run / "report.html"
            members.append({"group": name, "checkpoint": row["checkpoint"], "seed": row["seed"],
                            "link": report.relative_to(folder).as_posix() if report.is_file() else None})
            table = run / "deletion" / "deletion_curves.csv"
            if table.is_file():
                curves[str(row["checkpoint"])] = pd.read_csv(table)
        png = group_curve_figure(curves, str(name), folder / "figures")
        sentences = [group_sentence(r) for _, r in summary[summary["group"] == name].iterrows()]
        blocks.append({"name": name, "figure": png.relative_to(folder).as_posix() if png else None,
                       "sentences": sentences})
    html = _TEMPLATE.render(
        title=title or f"Study of {len(groups)} checkpoints in {len(blocks)} groups", members=members, groups=blocks,
        summary_table=summary.to_html(index=False, float_format=lambda v: f"{v:.4g}"),
        differences=[difference_sentence(r) for _, r in differences.iterrows()],
        differences_table=differences.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    out = folder / STUDY_HTML
    atomic_write_text(out, html)
    return out
