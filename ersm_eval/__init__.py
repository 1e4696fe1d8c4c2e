"""Evaluators: deletion curves, occlusion, sparsity and localization, as pandas tables.

The library face, for any image classifier::

    import ersm_eval

    model = ersm_eval.wrap(torchvision_resnet, layer="layer4")  # timm and ERSM models need no wrap
    result = ersm_eval.evaluate_deletion(model, loader, scores={"gradcam": maps})
    result.tables["deletion_summary.csv"]
    result.save("runs/resnet-deletion")  # then: ersm-eval report runs/resnet-deletion
"""

from importlib import import_module
from typing import Any

# name -> module; imported on first use, so that `import ersm_eval.schema` (and `ersm-eval --help`) needs no torch
_EXPORTS = {
    "wrap": "ersm_eval.adapter",
    "ModelAdapter": "ersm_eval.adapter",
    "evaluate_deletion": "ersm_eval.api",
    "evaluate_occlusion": "ersm_eval.api",
    "evaluate_sparsity": "ersm_eval.api",
    "mask_statistics": "ersm_eval.api",
    "run_evaluator": "ersm_eval.api",
    "tokens_from_maps": "ersm_eval.api",
    "map_randomization": "ersm_eval.randomization",
    "Evaluator": "ersm_eval.contract",
    "SpatialClassifier": "ersm_eval.contract",
    "DeletionSettings": "ersm_eval.deletion",
    "DeletionEvaluator": "ersm_eval.deletion",
    "OcclusionSettings": "ersm_eval.occlusion",
    "OcclusionConfig": "ersm_eval.occlusion",
    "OcclusionEvaluator": "ersm_eval.occlusion",
    "SparsitySettings": "ersm_eval.sparsity",
    "SparsityEvaluator": "ersm_eval.sparsity",
    "SUMMARY_SCHEMA_VERSION": "ersm_eval.results",
    "EvaluationResult": "ersm_eval.results",
    "ModelInfo": "ersm_eval.results",
    "RunSummary": "ersm_eval.results",
    "check_summary": "ersm_eval.results",
    "load_summary": "ersm_eval.results",
    "study": "ersm_eval.pipelines.study",
    "run_study": "ersm_eval.pipelines.study",
    "StudyRun": "ersm_eval.pipelines.study",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ersm_eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "study",
    "map_randomization",
    "wrap",
    "ModelAdapter",
    "evaluate_deletion",
    "evaluate_occlusion",
    "evaluate_sparsity",
    "mask_statistics",
    "run_evaluator",
    "tokens_from_maps",
    "Evaluator",
    "SpatialClassifier",
    "DeletionSettings",
    "DeletionEvaluator",
    "OcclusionSettings",
    "OcclusionConfig",
    "OcclusionEvaluator",
    "SparsitySettings",
    "SparsityEvaluator",
    "EvaluationResult",
    "RunSummary",
    "ModelInfo",
    "SUMMARY_SCHEMA_VERSION",
    "check_summary",
    "load_summary",
    "run_study",
    "StudyRun",
]
