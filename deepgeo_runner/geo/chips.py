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
from functools import partial

import numpy as np
from scipy import ndimage

from deepgeo_runner.core.errors import ConfigError, StageError
from deepgeo_runner.geo.choices import Split
from deepgeo_runner.geo.dealing import assign_blocks_by_class, class_lut
from deepgeo_runner.geo.folds import choose_groups, fold_split, require_groups

SPLITS: tuple[str, ...] = tuple(s.value for s in Split)
NO_SPLIT = -1  # split-map value of pixels that belong to no split (outside every split polygon)
CLASS_SPLIT_VERSION = 3  # part of cache keys: bump when choose_class_split deals blocks differently


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
    shares = _check_split_options(fractions, block_size)
    height, width = shape
    n_rows, n_cols = -(-height // block_size), -(-width // block_size)
    n_blocks = n_rows * n_cols
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


def _check_split_options(fractions: Sequence[float], block_size: int) -> np.ndarray:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ConfigError(
            f"data.split_fractions must be three non-negative shares (train, val, test), got "
            f"{list(fractions)}."
        )
    if block_size < 1:
        raise ConfigError(f"data.block_size must be a positive number of pixels, got {block_size}.")
    return np.asarray(fractions, dtype=np.float64) / float(sum(fractions))


def block_class_counts(labels: np.ndarray, class_ids: Sequence[int], block_size: int) -> np.ndarray:
    """(n_blocks, K) pixels of each class id in each block, blocks numbered row-major."""
    height, width = labels.shape
    n_cols = -(-width // block_size)
    lut = class_lut(class_ids)
    n_blocks = -(-height // block_size) * n_cols
    counts = np.zeros((n_blocks, len(class_ids) + 1), dtype=np.int64)
    block_cols = np.arange(width) // block_size
    for row in range(0, height, block_size):  # a band of blocks at a time: bounded temporaries
        band = labels[row:row + block_size]
        block = (row // block_size) * n_cols + np.broadcast_to(block_cols, band.shape)
        flat = block.ravel() * (len(class_ids) + 1) + lut[band.ravel()]
        counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)
    return counts[:, :-1]


def _block_map(assignment: np.ndarray, shape: tuple[int, int], block_size: int) -> np.ndarray:
    """The per-pixel (H, W) map of a per-block assignment (blocks row-major)."""
    height, width = shape
    grid = assignment.reshape(-(-height // block_size), -(-width // block_size))
    return np.repeat(np.repeat(grid, block_size, axis=0), block_size, axis=1)[:height, :width]


def reachable_by_chips(area: np.ndarray, size: int, stride: int = 1, labelled: np.ndarray | None = None,
                       need: int = 0) -> np.ndarray:
    """Pixels of ``area`` that some ``size``-px window lying wholly inside ``area`` covers:
    what a chip can actually reach (thin slivers between buffers cannot hold one). ``stride``:
    windows start only at multiples of it (the val/test grid chips); 1 for random chips.
    ``labelled`` (labelled pixels per cell of ``area``) and ``need``: a window must hold at
    least that many labelled pixels, as the chips stage keeps only such windows."""
    height, width = area.shape
    if size > height or size > width:
        return np.zeros_like(area, dtype=bool)
    rows, cols = np.arange(0, height - size + 1, stride), np.arange(0, width - size + 1, stride)
    table = _integral(area)
    fits = _window_sums(table, rows[:, None], cols[None, :], size) == size * size
    if labelled is not None:
        fits &= _window_sums(_integral(labelled), rows[:, None], cols[None, :], size) >= max(need, 1)
    starts = np.zeros((height, width), dtype=bool)
    starts[np.ix_(rows, cols)] = fits
    # a pixel is covered when a fitting window starts within the size × size box above-left of it
    table = _integral(starts)
    r, c = np.arange(height), np.arange(width)
    r0, c0 = np.maximum(r - size + 1, 0), np.maximum(c - size + 1, 0)
    covered = (table[r[:, None] + 1, c[None, :] + 1] - table[r0[:, None], c[None, :] + 1]
               - table[r[:, None] + 1, c0[None, :]] + table[r0[:, None], c0[None, :]])
    return covered > 0


def cell_class_counts(labels: np.ndarray, class_ids: Sequence[int], step: int) -> np.ndarray:
    """(rows, cols, K) pixels of each class id in each whole ``step`` × ``step`` cell (partial
    edge cells left out): exact class counts on a coarse grid, so thin or small classes are
    never missed the way sampling every ``step``-th pixel would miss them."""
    rows, cols = labels.shape[0] // step, labels.shape[1] // step
    lut = class_lut(class_ids)
    counts = np.zeros((rows, cols, len(class_ids) + 1), dtype=np.int64)
    cell_cols = np.repeat(np.arange(cols), step)
    for r in range(rows):  # a band of cells at a time: bounded temporaries on Landsat scenes
        band = labels[r * step:(r + 1) * step, : cols * step]
        flat = np.broadcast_to(cell_cols, band.shape).ravel() * (len(class_ids) + 1) + lut[band.ravel()]
        counts[r] = np.bincount(flat, minlength=cols * (len(class_ids) + 1)).reshape(cols, -1)
    return counts[..., :-1]


def whole_cells(mask: np.ndarray, step: int) -> np.ndarray:
    """Cells of ``mask`` (cropped to whole cells) where every pixel is set: never optimistic."""
    rows, cols = mask.shape[0] // step, mask.shape[1] // step
    return mask[: rows * step, : cols * step].reshape(rows, step, cols, step).all(axis=(1, 3))


def coarse_step(block_size: int, chip_size: int) -> int:
    """The largest divisor of ``block_size`` up to ``chip_size // 8``: blocks map onto whole
    cells, and scoring a split costs about 1/64 of the full resolution."""
    limit = max(1, chip_size // 8)
    return max(d for d in range(1, limit + 1) if block_size % d == 0)


def choose_class_split(
    labels: np.ndarray, class_ids: Sequence[int], block_size: int, fractions: Sequence[float], seed: int,
    buffer: int, chip_size: int, candidates: int = 8, eval_stride: int | None = None,
    min_labelled_fraction: float = 0.0, folds: int | None = None, fold: int = 0,
) -> np.ndarray:
    """The best of ``candidates`` seeded class-aware block splits, judged as training will see them.

    Each candidate deals the blocks by :func:`assign_blocks_by_class`; it is scored by (classes
    a training chip can reach, classes in test, classes in val, the smallest share of a class's
    pixels that training chips reach, then all of them). The buffer and the chip size can
    strand a class's training pixels where no chip fits; this picks the split that loses least
    to them. Scored on whole cells of a coarse grid with exact class counts per cell, the
    buffer and chip rounded up: never optimistic. Deterministic for a given ``seed``.

    ``folds``: spatial k-fold (:mod:`deepgeo_runner.geo.folds`): the labelled blocks are dealt
    into ``folds`` class-stratified groups (by ``seed`` alone), test is group ``fold``, and the
    candidates differ only in how val is dealt from the other blocks.
    """
    _check_split_options(fractions, block_size)
    counts = block_class_counts(labels, class_ids, block_size)
    deal = partial(assign_blocks_by_class, counts, fractions)
    step = coarse_step(block_size, chip_size)
    cells = cell_class_counts(labels, class_ids, step)
    rows, cols = cells.shape[:2]
    per = block_size // step
    grid_stride = max(1, round((eval_stride or chip_size) / step))  # val/test chips: a grid from the origin
    labelled, need = cells.sum(axis=-1), int(np.ceil(min_labelled_fraction * chip_size * chip_size))
    n_grid = (-(-labels.shape[0] // block_size), -(-labels.shape[1] // block_size))

    def coarse(assignment: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(assignment.reshape(n_grid), per, axis=0), per, axis=1)[:rows, :cols]

    if folds is not None:

        def test_reach(groups: np.ndarray) -> np.ndarray:  # what each group's test chips would reach
            where = coarse(groups)
            return np.stack([cells[reachable_by_chips(where == g, -(-chip_size // step), grid_stride, labelled, need)]
                             .sum(axis=0) for g in range(folds)])

        groups = choose_groups(counts, folds, seed, reach=test_reach)
        require_groups(groups, folds, "labelled blocks", "data.block_size")
        deal = partial(fold_split, counts, groups, fold, fractions)
    totals = counts.sum(axis=0).astype(np.float64)  # exact: a class is present if any block holds it
    best, best_score = None, None
    for k in range(candidates):
        assignment = deal(seed + 7919 * k)
        split_cells = coarse(assignment)
        train, val, test = (
            cells[reachable_by_chips(usable_area(split_cells, i, -(-buffer // step)), -(-chip_size // step),
                                     1 if i == 0 else grid_stride, labelled, need)].sum(axis=0).astype(np.float64)
            for i in range(3))
        present = totals > 0
        share = train[present] / totals[present] if present.any() else np.zeros(1)
        score = (int((train[present] > 0).sum()), int((test[present] > 0).sum()), int((val[present] > 0).sum()),
                 round(float(share.min()), 3), round(float(train.sum() / max(totals.sum(), 1)), 3))
        if best_score is None or score > best_score:
            best, best_score = assignment, score
    return _block_map(best, labels.shape, block_size)


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


def class_balanced_windows(
    in_split: np.ndarray,
    labelled: np.ndarray,
    targets: np.ndarray,
    n_targets: int,
    size: int,
    count: int,
    min_labelled_fraction: float,
    seed: int,
    max_tries: int = 50,
) -> list[Window]:
    """``count`` windows inside ``in_split``, an equal share anchored on each class's pixels.

    Uniform random windows follow the classes' areas, so a class covering 2 % of the training
    area gets a handful of pixels; here every model target present gets ``count / K``
    windows, each placed so that a randomly drawn pixel of that class lies inside it (at a
    random position). Shares a class cannot fill go to the other classes.
    """
    height, width = in_split.shape
    if size > height or size > width or count <= 0:
        return []
    split_table, label_table = _integral(in_split), _integral(labelled & in_split)
    need = max(int(np.ceil(min_labelled_fraction * size * size)), 1)
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero((targets == t) & in_split) for t in range(n_targets)]
    present = [t for t in range(n_targets) if pools[t].size]
    found: list[Window] = []
    for i, t in enumerate(present):
        quota = (count - len(found)) // (len(present) - i)  # what earlier classes left
        mine: list[Window] = []
        for _ in range(max_tries):
            pixels = rng.choice(pools[t], size=4 * quota)
            rows = pixels // width - rng.integers(0, size, size=pixels.size)
            cols = pixels % width - rng.integers(0, size, size=pixels.size)
            fits = (rows >= 0) & (cols >= 0) & (rows <= height - size) & (cols <= width - size)
            rows, cols = rows[fits], cols[fits]
            ok = (_window_sums(split_table, rows, cols, size) == size * size) & (
                _window_sums(label_table, rows, cols, size) >= need)
            mine += [Window(int(r), int(c), size) for r, c in zip(rows[ok], cols[ok], strict=True)]
            if len(mine) >= quota:
                break
        found += mine[:quota]
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
