"""Errors raised for a user's mistake (bad input, missing data, bad checkpoint).

The CLI catches :class:`ERSMError` once, prints its message and exits non-zero;
anything else is a bug and keeps its traceback.
"""

__all__ = ["ERSMError", "CheckpointError", "DatasetError", "ConfigError"]


class ERSMError(ValueError):
    """A problem with what the user handed us; the message says how to fix it."""


class CheckpointError(ERSMError):
    """A checkpoint file is missing, unreadable, untrusted or incompatible."""


class DatasetError(ERSMError):
    """A dataset is missing, malformed, empty or incompatible with the model."""


class ConfigError(ERSMError):
    """An option or model configuration is invalid."""
