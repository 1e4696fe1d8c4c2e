"""Versions of the packages that shape results, for provenance, read without importing them.

``importlib.metadata`` reads each installed distribution's version from its metadata, so
asking for torch's version does not import torch: the torch-free paths of the tool (the
report, ``--help``) can record provenance too.
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

__all__ = ["versions"]

#: distribution name → key in the provenance record
_PACKAGES = {
    "ersm-eval": "ersm_eval",
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "numpy": "numpy",
}


def _version(distribution: str) -> str:
    module = sys.modules.get(distribution.replace("-", "_"))
    loaded = getattr(module, "__version__", None)
    if isinstance(loaded, str):  # already imported: its own string, with any build label (+cu130)
        return loaded
    try:
        return version(distribution)
    except PackageNotFoundError:  # running from a source tree, or not installed
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of the packages that shape results, for provenance (no package is imported)."""
    found = {key: _version(name) for name, key in _PACKAGES.items()}
    found["python"] = platform.python_version()
    return found
