"""External score maps read from a ``.npy`` file (``--scores``), checked before they are loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ersm_core.errors import ConfigError

__all__ = ["load_scores"]


def load_scores(path: Path, n_images: int, grid: tuple[int, int] | None = None, image_size: int | None = None) -> np.ndarray:
    """External score maps from a .npy file: [n_images, h, w] (or [n_images, 1, h, w]), finite numbers,
    one map per evaluated image (ascending dataset index), read without pickles.

    The header is read and checked first (dtype, shape: ``n_images`` maps of the token ``grid`` or of
    ``image_size`` pixels when given), so a file that declares a huge array is refused before any
    memory is allocated for it.
    """
    shape, dtype = _scores_header(path)
    if dtype.kind not in "biuf":
        raise ConfigError(f"--scores {path} must hold numbers, got dtype {dtype}; save a float array with numpy.save")
    dims = shape[:1] + shape[2:] if len(shape) == 4 and shape[1] == 1 else shape
    if len(dims) != 3:
        raise ConfigError(f"--scores {path} must be maps [n_images, h, w] or [n_images, H, W], got shape "
                          f"{list(shape)} (sum attributions over the colour channels first)")
    if dims[0] != n_images:
        raise ConfigError(f"--scores {path} holds {dims[0]} maps but {n_images} images are evaluated; give one map "
                          "per image, in ascending dataset-index order (the same --limit and --subset-seed)")
    sizes = [tuple(grid)] if grid is not None else []
    sizes += [(image_size, image_size)] if image_size is not None else []
    if sizes and tuple(dims[1:]) not in sizes:
        raise ConfigError(f"--scores {path} maps are {dims[1]}×{dims[2]}; give maps of the token grid "
                          + " or of the input image in pixels ".join(f"{h}×{w}" for h, w in sizes))
    try:
        maps = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(f"--scores {path} cannot be read ({err}); save it again with numpy.save") from None
    maps = maps.reshape(dims)
    bad = int(maps.size - np.count_nonzero(np.isfinite(maps))) if maps.dtype.kind == "f" else 0
    if bad:
        raise ConfigError(f"--scores {path} holds {bad} NaN or infinite value(s); every score must be a finite number")
    return maps


def _scores_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of a .npy file, without reading its data."""
    from ersm_core.files import read_npy_header

    try:
        with open(path, "rb") as file:
            header = read_npy_header(file)
    except FileNotFoundError:
        raise ConfigError(f"--scores file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"--scores {path} is a folder; give a .npy file written by numpy.save") from None
    except (ValueError, OSError) as err:  # read_npy_header turns numpy's parsing errors into ValueError
        raise ConfigError(f"--scores {path} is not a numpy .npy array of numbers ({err}); save it with numpy.save") from None
    if not header.plain_numbers:
        raise ConfigError(f"--scores {path} must hold numbers, got dtype {header.dtype}; save a float array with numpy.save")
    return header.shape, header.dtype
