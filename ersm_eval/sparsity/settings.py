"""How a sparsity run is asked: :class:`SparsitySettings`, validated once when made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ersm_core.errors import ConfigError
from ersm_eval.localization import BOX_THRESHOLD, IOU_THRESHOLDS

__all__ = ["SparsitySettings", "NO_MASKS_NOTE", "NOT_ASKED_NOTE"]

NO_MASKS_NOTE = "localization not measured: the dataset has no object masks or boxes (the other statistics were still computed)"
NOT_ASKED_NOTE = "localization not measured: --no-localization was given"


@dataclass(frozen=True)
class SparsitySettings:
    """What a sparsity run measures and how its intervals are drawn; :meth:`to_dict` goes into summary.json.

    Attributes:
        localize: compare the maps with object masks/boxes where the images have them.
        iou_thresholds: fractions of a map's max for the mask IoU, each in (0, 1).
        box_threshold: fraction of a map's max for the box protocol, in (0, 1).
        seed: seed of the bootstrap intervals.
        n_boot: bootstrap resamples (at least 10).
        label: value of the tables' checkpoint column.
    """

    localize: bool = True
    iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS
    box_threshold: float = BOX_THRESHOLD
    seed: int = 0
    n_boot: int = 1000
    label: str = ""

    def __post_init__(self) -> None:
        try:
            thresholds = tuple(float(t) for t in self.iou_thresholds)
            box = float(self.box_threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"iou_thresholds and box_threshold must be numbers, got {self.iou_thresholds!r} "
                              f"and {self.box_threshold!r}") from None
        bad = [t for t in (*thresholds, box) if not 0.0 < t < 1.0]
        if bad:
            raise ConfigError(f"IoU and box thresholds are fractions of a map's maximum in (0, 1), got {bad[0]}")
        for name in ("seed", "n_boot"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be non-negative, got {self.seed}")
        if self.n_boot < 10:
            raise ConfigError(f"n_boot must be at least 10, got {self.n_boot}")
        object.__setattr__(self, "iou_thresholds", thresholds)
        object.__setattr__(self, "box_threshold", box)
        object.__setattr__(self, "localize", bool(self.localize))
        object.__setattr__(self, "label", str(self.label))

    def to_dict(self) -> dict[str, Any]:
        """The settings summary.json records (the label is the run's, recorded apart)."""
        return {"localize": self.localize, "iou_thresholds": list(self.iou_thresholds),
                "box_threshold": self.box_threshold, "seed": self.seed, "n_boot": self.n_boot}
