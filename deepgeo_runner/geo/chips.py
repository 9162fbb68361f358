"""Choosing chip windows and spatially disjoint train/val/test splits.

The scene is cut into square blocks and each block goes to one split (or the user draws the
splits as polygons, :mod:`deepgeo_runner.geo.split_vector`). A chip is only ever
taken where every one of its pixels belongs to its split, so no test pixel can sit inside a
training chip however the windows are drawn. (The original toolbox split chips at random
after cutting them, which lets overlapping chips leak across splits.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from deepgeo_runner.errors import ConfigError, StageError

SPLITS: tuple[str, ...] = ("train", "val", "test")
NO_SPLIT = -1  # split-map value of pixels that belong to no split (outside every split polygon)


@dataclass(frozen=True)
class Window:
    """A chip's pixel window: top-left row and column, and its side."""

    row: int
    col: int
    size: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.size), slice(self.col, self.col + self.size)


def split_blocks(
    shape: tuple[int, int], block_size: int, fractions: Sequence[float], seed: int
) -> np.ndarray:
    """Assign each block of the scene to a split (0 train, 1 val, 2 test), seeded.

    Returns the per-pixel split map (H, W) as int8. Every split with a positive fraction
    gets at least one block when the scene has enough of them.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ConfigError(
            f"data.split_fractions must be three non-negative shares (train, val, test), got "
            f"{list(fractions)}."
        )
    if block_size < 1:
        raise ConfigError(f"data.block_size must be a positive number of pixels, got {block_size}.")
    height, width = shape
    n_rows, n_cols = -(-height // block_size), -(-width // block_size)
    n_blocks = n_rows * n_cols
    shares = np.asarray(fractions, dtype=np.float64) / float(sum(fractions))
    counts = np.floor(shares * n_blocks).astype(int)
    for i in np.argsort(-(shares * n_blocks - counts)):  # largest remainders first
        if counts.sum() >= n_blocks:
            break
        counts[i] += 1
    for i in range(3):  # make sure val and test exist when asked for
        if shares[i] > 0 and counts[i] == 0 and counts.max() > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    rng = np.random.default_rng(seed)
    block_split = np.repeat(np.arange(3, dtype=np.int8), counts)
    rng.shuffle(block_split)
    grid = block_split.reshape(n_rows, n_cols)
    return np.repeat(np.repeat(grid, block_size, axis=0), block_size, axis=1)[:height, :width]


def usable_area(split_map: np.ndarray, split_id: int, buffer: int) -> np.ndarray:
    """Pixels of ``split_id`` where a chip may lie.

    Training chips keep ``buffer`` pixels away from every val/test pixel, so neighbouring
    pixels — strongly autocorrelated in imagery — cannot leak between the splits. Val and
    test keep their whole blocks. Pixels of no split (:data:`NO_SPLIT`) need no buffer: no
    chip of any split is cut there.
    """
    area = split_map == split_id
    if split_id != 0 or buffer <= 0:
        return area
    others = split_map > 0
    near_others = ndimage.maximum_filter(others.astype(np.uint8), size=2 * buffer + 1) > 0
    return area & ~near_others


def point_windows(
    rows: np.ndarray, cols: np.ndarray, in_split: np.ndarray, labelled: np.ndarray,
    size: int, min_labelled_fraction: float,
) -> list[Window]:
    """Windows centred on given pixel positions, kept when wholly inside the split area."""
    height, width = in_split.shape
    half = size // 2
    r0, c0 = np.asarray(rows) - half, np.asarray(cols) - half
    fits = (r0 >= 0) & (c0 >= 0) & (r0 + size <= height) & (c0 + size <= width)
    r0, c0 = r0[fits], c0[fits]
    inside = _window_sums(_integral(in_split), r0, c0, size) == size * size
    labels = _window_sums(_integral(labelled & in_split), r0, c0, size)
    enough = labels >= max(int(np.ceil(min_labelled_fraction * size * size)), 1)
    keep = inside & enough
    return [Window(int(r), int(c), size) for r, c in zip(r0[keep], c0[keep], strict=True)]


def _integral(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row/column: window sums in O(1)."""
    out = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    out[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return out


def _window_sums(table: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    return (
        table[rows + size, cols + size]
        - table[rows, cols + size]
        - table[rows + size, cols]
        + table[rows, cols]
    )


def random_windows(
    in_split: np.ndarray,
    labelled: np.ndarray,
    size: int,
    count: int,
    min_labelled_fraction: float,
    seed: int,
    max_tries: int = 200,
) -> list[Window]:
    """Draw ``count`` random windows lying wholly inside ``in_split`` with enough labels.

    Rejection sampling over summed-area tables; returns fewer windows (maybe none) when the
    split area cannot hold them, and lets the caller say why.
    """
    height, width = in_split.shape
    if size > height or size > width:
        return []
    split_table, label_table = _integral(in_split), _integral(labelled & in_split)
    rng = np.random.default_rng(seed)
    need_labels = int(np.ceil(min_labelled_fraction * size * size))
    found: list[Window] = []
    for _ in range(max_tries):
        rows = rng.integers(0, height - size + 1, size=4 * count)
        cols = rng.integers(0, width - size + 1, size=4 * count)
        inside = _window_sums(split_table, rows, cols, size) == size * size
        enough = _window_sums(label_table, rows, cols, size) >= max(need_labels, 1)
        for r, c in zip(rows[inside & enough], cols[inside & enough], strict=True):
            found.append(Window(int(r), int(c), size))
            if len(found) == count:
                return found
    return found


def grid_windows(
    in_split: np.ndarray,
    labelled: np.ndarray,
    size: int,
    stride: int,
    min_labelled_fraction: float,
) -> list[Window]:
    """Sequential (grid) windows lying wholly inside ``in_split`` with enough labels."""
    height, width = in_split.shape
    if size > height or size > width:
        return []
    rows = np.arange(0, height - size + 1, stride)
    cols = np.arange(0, width - size + 1, stride)
    rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    inside = _window_sums(_integral(in_split), rr, cc, size) == size * size
    labels = _window_sums(_integral(labelled & in_split), rr, cc, size)
    enough = labels >= max(int(np.ceil(min_labelled_fraction * size * size)), 1)
    return [Window(int(r), int(c), size) for r, c in zip(rr[inside & enough], cc[inside & enough], strict=True)]


def coverage(windows: Sequence[Window], shape: tuple[int, int]) -> np.ndarray:
    """Boolean map of the pixels inside any of the windows."""
    covered = np.zeros(shape, dtype=bool)
    for w in windows:
        covered[w.slices] = True
    return covered


def check_no_leakage(windows: dict[str, Sequence[Window]], shape: tuple[int, int]) -> None:
    """Fail if any pixel of a val or test chip also lies inside a training chip."""
    train = coverage(windows.get("train", []), shape)
    for split in ("val", "test"):
        shared = int((coverage(windows.get(split, []), shape) & train).sum())
        if shared:
            raise StageError(
                f"leakage: {shared} pixels of the {split} chips lie inside training chips. "
                "This is a bug in the chip sampler; please report it with the config."
            )


def require_chips(split: str, windows: Sequence[Window], why: str) -> None:
    """Never let an empty split crash deep inside a data loader: say which and why."""
    if not windows:
        raise StageError(f"no {split} chip could be cut: {why}")
