"""The image-selection rule of every command (``--limit N --subset-seed S``).

It lives in :mod:`ersm_core.data.subset` because training uses it too (ersm_core
never imports ersm_eval); this module re-exports it for the evaluators.
"""

from ersm_core.data.subset import dataset_labels, indices_sha256, stratified_split, stratified_subset, subset_record

__all__ = ["dataset_labels", "stratified_subset", "stratified_split", "indices_sha256", "subset_record"]
