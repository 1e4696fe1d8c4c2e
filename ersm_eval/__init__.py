"""Evaluators: deletion curves, occlusion, sparsity and mask statistics, as pandas tables.

The library face, for any image classifier::

    import ersm_eval

    model = ersm_eval.wrap(torchvision_resnet, layer="layer4")  # timm and ERSM models need no wrap
    result = ersm_eval.evaluate_deletion(model, loader, scores={"gradcam": maps})
    result.tables["deletion_summary.csv"]
    result.save("runs/resnet-deletion")  # then: ersm-eval report runs/resnet-deletion
"""

from ersm_eval.adapter import ModelAdapter, wrap
from ersm_eval.api import evaluate_deletion, evaluate_occlusion, mask_statistics, tokens_from_maps
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionConfig
from ersm_eval.results import (
    SUMMARY_SCHEMA_VERSION,
    EvaluationResult,
    ModelInfo,
    RunSummary,
    check_summary,
    load_summary,
)

__all__ = [
    "wrap",
    "ModelAdapter",
    "evaluate_deletion",
    "evaluate_occlusion",
    "mask_statistics",
    "tokens_from_maps",
    "DeletionSettings",
    "OcclusionConfig",
    "EvaluationResult",
    "RunSummary",
    "ModelInfo",
    "SUMMARY_SCHEMA_VERSION",
    "check_summary",
    "load_summary",
]
