"""Figures and the self-contained HTML report, built from evaluation run folders alone.

Data flows dataset → model → evaluator → tidy tables → **reports** → files; this
package reads the tables (:mod:`ersm_eval.schema`) and never touches a model.
"""

from reports.figures_agreement import plot_ranking_agreement
from reports.figures_deletion import plot_deletion_curves, plot_deletion_summary
from reports.figures_insertion import plot_insertion_curves
from reports.figures_gallery import plot_mask_gallery, upsample_bilinear
from reports.figures_localization import plot_localization
from reports.figures_occlusion import plot_occlusion
from reports.figures_sparsity import plot_keep_by_correctness, plot_keep_histogram, plot_per_class_keep
from reports.figures_style import save_figure
from reports.html import build_report
from reports.paper_table import paper_table, summary_table, write_paper_table
from reports.tables import ReportError, Run, load_run

__all__ = [
    "ReportError",
    "Run",
    "build_report",
    "load_run",
    "paper_table",
    "plot_deletion_curves",
    "plot_deletion_summary",
    "plot_insertion_curves",
    "plot_keep_by_correctness",
    "plot_keep_histogram",
    "plot_localization",
    "plot_mask_gallery",
    "plot_occlusion",
    "plot_per_class_keep",
    "plot_ranking_agreement",
    "save_figure",
    "summary_table",
    "upsample_bilinear",
    "write_paper_table",
]
