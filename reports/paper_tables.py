"""The paper's tables of a study folder, written as Markdown, LaTeX and CSV.

Reads a study folder's groups.csv and group_summary.csv, takes the pilot and backbone
tables from :mod:`ersm_eval.studies.paper` (which builds every cell, so the three files
show the same text) and writes ``paper_tables.md``, ``paper_tables.tex`` (booktabs)
and ``paper_tables.csv`` (one row per cell, with the numbers behind it). Renders only:
no number is formatted and no verdict decided here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ersm_core.files import atomic_write_text
from ersm_eval.studies.paper import PaperTable, paper_tables
from ersm_eval.studies.tables import GROUPS_FILE, SUMMARY_FILE, read_study_tables
from reports.paper_table import _latex_escape

__all__ = ["PAPER_TABLE_FILES", "CSV_COLUMNS", "markdown_tables", "latex_tables", "csv_table", "write_paper_tables"]

PAPER_TABLE_FILES = ("paper_tables.md", "paper_tables.tex", "paper_tables.csv")
CSV_COLUMNS = ("table", "row", "column", "cell", "group", "metric", "mean", "std", "n_seeds")
_TEXT_COLUMNS = ("Variant", "Dataset", "Backbone", "Ranking", "Verdict")  # left-aligned
_LATEX_SYMBOLS = {"±": r"$\pm$", "–": "--", "−": "$-$", "Δ": r"$\Delta$"}


def _markdown_cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def markdown_tables(tables: list[PaperTable]) -> str:
    """Every table as a Markdown section: title, pipe table, note."""
    parts = []
    for table in tables:
        columns = list(table.cells.columns)
        lines = [f"## {table.title}", "",
                 "| " + " | ".join(_markdown_cell(c) for c in columns) + " |",
                 "|" + "|".join(":---" if c in _TEXT_COLUMNS else "---:" for c in columns) + "|"]
        lines += ["| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in table.cells.itertuples(index=False)]
        lines += ["", table.note]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _latex(text: object) -> str:
    escaped = _latex_escape(str(text))
    for symbol, command in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    return escaped


def latex_tables(tables: list[PaperTable]) -> str:
    """Every table as a booktabs ``table`` environment, the note in its caption."""
    parts = []
    for table in tables:
        columns = list(table.cells.columns)
        align = "".join("l" if c in _TEXT_COLUMNS else "r" for c in columns)
        body = [" & ".join(_latex(v) for v in row) + r" \\" for row in table.cells.itertuples(index=False)]
        parts.append("\n".join([
            r"\begin{table}[t]", r"\centering",
            rf"\caption{{{_latex(table.title)}. {_latex(table.note)}}}", rf"\label{{tab:ersm-{table.name}}}",
            rf"\begin{{tabular}}{{{align}}}", r"\toprule",
            " & ".join(_latex(c) for c in columns) + r" \\", r"\midrule", *body, r"\bottomrule",
            r"\end{tabular}", r"\end{table}",
        ]))
    return "\n\n".join(parts) + "\n"


def csv_table(tables: list[PaperTable]) -> pd.DataFrame:
    """One row per cell of every table (table, row, column, cell) with the numbers behind it where it has some."""
    frames = []
    for table in tables:
        cells = table.cells.reset_index().melt(id_vars="row", var_name="column", value_name="cell")
        cells.insert(0, "table", table.name)
        numbers = table.numbers.drop(columns=["cell"])
        frames.append(cells.merge(numbers, on=["table", "row", "column"], how="left"))
    out = pd.concat(frames, ignore_index=True)[list(CSV_COLUMNS)]
    out["n_seeds"] = pd.to_numeric(out["n_seeds"]).astype("Int64")
    return out


def write_paper_tables(study_folder: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write paper_tables.md, .tex and .csv from a study folder's groups.csv and group_summary.csv.

    Args:
        study_folder: the study folder to read.
        out_dir: where to write (created if needed); default the study folder.

    Returns:
        File name -> path written.

    Raises:
        ValueError: the study folder or its tables are missing or malformed, or the tables
            cannot be built; nothing is written then.
    """
    tables = read_study_tables(study_folder)
    built = paper_tables(tables[GROUPS_FILE], tables[SUMMARY_FILE])
    texts = dict(zip(PAPER_TABLE_FILES, (markdown_tables(built), latex_tables(built),
                                         csv_table(built).to_csv(index=False))))
    out = Path(study_folder if out_dir is None else out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"cannot write the paper tables into {out}: it is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return {name: atomic_write_text(out / name, text) for name, text in texts.items()}
