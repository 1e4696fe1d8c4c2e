"""Whole evaluations from a checkpoint path and a dataset name: what each command runs.

A pipeline loads the checkpoint (weights only), builds the dataset with the model's
transform, picks the ``--limit`` subset, feeds this process's batches (through the
feature cache where asked) to one ``evaluate_*`` function, reports progress through
the callable it is given, and writes the result folder atomically with its
summary.json (rank 0 only under torchrun). The command line only parses options,
calls one pipeline and prints what it returns.
"""

from ersm_eval.pipelines.common import PipelineRun, ProgressBar, dataset_batches, no_progress, save_result
from ersm_eval.pipelines.compare import SKIPPABLE, Comparison, check_same_classes, compare_evaluations
from ersm_eval.pipelines.deletion import run_deletion
from ersm_eval.pipelines.occlusion import run_occlusion
from ersm_eval.pipelines.scores import load_scores
from ersm_eval.pipelines.sparsity import run_sparsity

__all__ = [
    "PipelineRun",
    "ProgressBar",
    "no_progress",
    "dataset_batches",
    "save_result",
    "load_scores",
    "run_deletion",
    "run_occlusion",
    "run_sparsity",
    "compare_evaluations",
    "Comparison",
    "check_same_classes",
    "SKIPPABLE",
]
