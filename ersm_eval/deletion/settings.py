"""How a deletion evaluation runs: :class:`DeletionSettings`, validated once when made."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ersm_core.errors import ConfigError
from ersm_eval.fills import FILL_KINDS, MASKED_FILL_KINDS
from ersm_eval.rankings import DEFAULT_RANKINGS

__all__ = ["LEVELS", "FILLS", "DeletionSettings"]

LEVELS = ("feature", "input")
FILLS = FILL_KINDS + MASKED_FILL_KINDS  # the fills of ersm_eval.fills (nli: input level only)


@dataclass(frozen=True)
class DeletionSettings:
    """How a deletion evaluation runs; ``asdict`` goes into summary.json."""

    rankings: tuple[str, ...] = DEFAULT_RANKINGS  # ranking names, in table order
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # seeds of the random ranking, one curve each
    steps: int | None = None  # None: every k = 0..N−1; an int: that many evenly spaced k, 0 and N−1 included
    soft_gate: bool = False  # delete on the gated map Y (survivors keep π) instead of the ungated map X
    rescale: bool = True  # pool by the mean over the remaining positions (GAP·N/(N−k)); False: plain mean
    level: str = "feature"  # 'feature' (the paper's protocol) or 'input' (fill image regions, re-run the model)
    fill: str = "mean"  # input level: 'mean', 'black', 'noise', 'blur' or 'nli' (noisy linear imputation)
    fill_seed: int = 0  # input level: seed of the noise fill (with the dataset index)
    insertion: bool = False  # input level: also insertion curves (blurred image, MoRF tokens put back first)
    save_token_scores: bool = False  # keep every score of every image and token in the records
    label: str = ""  # value of the tables' checkpoint column
    n_boot: int = 1000  # bootstrap resamples for intervals and paired tests
    boot_seed: int = 0  # seed of the bootstrap resamples (fixed: the same run writes the same CSVs)
    head_rows: int = 16384  # pooled vectors per head call (bounds memory)
    input_chunk: int = 64  # images per model call at the input level

    def __post_init__(self) -> None:
        object.__setattr__(self, "rankings", tuple(self.rankings))
        for name in ("steps", "n_boot", "boot_seed", "fill_seed", "head_rows", "input_chunk"):
            value = getattr(self, name, 0)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ConfigError(f"{name} must be a whole number{' or None (every k)' if name == 'steps' else ''}, "
                                  f"got {value!r}")
        if isinstance(self.seeds, (str, bytes)) or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                                          for s in self.seeds):
            raise ConfigError(f"seeds must be a sequence of whole numbers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.level not in LEVELS:
            raise ConfigError(f"unknown deletion level {self.level!r}; use one of: {', '.join(LEVELS)}")
        if self.fill not in FILLS:
            raise ConfigError(f"unknown fill {self.fill!r}; use one of: {', '.join(FILLS)}")
        if self.fill in MASKED_FILL_KINDS and self.level != "input":
            raise ConfigError(f"--fill {self.fill} fills image regions, so it needs --level input")
        if self.level == "input" and (self.soft_gate or not self.rescale):
            raise ConfigError(
                "--soft-gate and --no-rescale apply to --level feature only; at --level input the model "
                "runs as at inference, with its own gate and pooling"
            )
        if not isinstance(self.insertion, (bool, np.bool_)):
            raise ConfigError(f"insertion must be True or False, got {self.insertion!r}")
        object.__setattr__(self, "insertion", bool(self.insertion))
        if self.insertion and self.level != "input":
            raise ConfigError(
                "--insertion needs --level input: at feature level, with the pooled map rescaled to the tokens "
                "kept, inserting the first k tokens of the MoRF order keeps exactly the tokens LeRF deletion keeps "
                "after N − k deletions, so the insertion curve would repeat the LeRF deletion curve"
            )
        if self.steps is not None and self.steps < 2:
            raise ConfigError(f"--steps takes 'all' or a count of at least 2 (k = 0 and k = N−1), got {self.steps}")
        if "random" in self.rankings and not self.seeds:
            raise ConfigError("the random ranking needs at least one seed (--seeds 0,1,2,3,4)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds has duplicates: {list(self.seeds)}")
        if self.n_boot < 10:
            raise ConfigError(f"n_boot must be at least 10, got {self.n_boot}")
        if self.head_rows < 1 or self.input_chunk < 1:
            raise ConfigError("head_rows and input_chunk must be positive")

