"""The self-contained HTML report, built from run folders alone.

Modules, in page order: :mod:`~reports.html.page` (:func:`build_report`, the page),
:mod:`~reports.html.glance` (each model at a glance), :mod:`~reports.html.sections`
(deletion, occlusion, sparsity and localization, galleries), :mod:`~reports.html.detail_tables`,
:mod:`~reports.html.readings` (the numbers in sentences, folded), :mod:`~reports.html.provenance`
(input folders and claims) and :mod:`~reports.html.blocks` (the parts a page is made of).
"""

from reports.html.page import GENERATOR, build_report, is_own_report
from reports.html.provenance import CLAIM_VERDICTS

__all__ = ["CLAIM_VERDICTS", "GENERATOR", "build_report", "is_own_report"]
