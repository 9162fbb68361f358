"""95 % intervals of a run's test scores by block bootstrap (:mod:`deepgeo_runner.ml.bootstrap`).

The unit resampled is the split block (``data.block_size`` cells of the scene the chip was
cut from), not the chip: the split deals whole blocks, so blocks are the design's sampling
units, and the few test chips of one block are adjacent tiles of the same ground — as
correlated as the pixels inside a chip. A chip belongs to the block holding its centre (with
split polygons, the blocks are just a grid grouping neighbouring chips).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepgeo_runner.ml.bootstrap import LEVEL, RESAMPLES, block_bootstrap


def chip_blocks(records: Sequence[dict], split: str, block_size: int) -> dict[int, tuple[str, int, int]]:
    """The block (scene, block row, block col) of each chip of ``split``, by its ``index``."""
    out = {}
    for r in records:
        if r["split"] != split:
            continue
        half = int(r["size"]) // 2
        out[int(r["index"])] = (str(r.get("scene", "data.image")), (int(r["row"]) + half) // block_size,
                                (int(r["col"]) + half) // block_size)
    return out


def block_confusions(chip_confusions: np.ndarray, blocks: dict[int, tuple[str, int, int]]) -> np.ndarray:
    """(n_blocks, K, K) sums of the chips' confusion matrices per block; blocks without a
    labelled test pixel are left out (they hold no evidence)."""
    keys = sorted(set(blocks.values()))
    unit = {key: i for i, key in enumerate(keys)}
    sums = np.zeros((len(keys),) + chip_confusions.shape[1:], dtype=np.int64)
    for index, key in blocks.items():
        if index < len(chip_confusions):
            sums[unit[key]] += chip_confusions[index]
    return sums[sums.reshape(len(keys), -1).sum(axis=1) > 0]


def add_block_intervals(scores: dict, chip_confusions: np.ndarray, store_dir: str | Path, split: str,
                        block_size: int, seed: int, resamples: int = RESAMPLES) -> dict:
    """``scores`` with ``ci95`` (see :func:`~deepgeo_runner.ml.bootstrap.block_bootstrap`) and
    ``ci95_method`` added; the existing keys are untouched. Fewer than 2 blocks: no interval."""
    records = json.loads((Path(store_dir) / "chips.json").read_text())["chips"]
    units = block_confusions(np.asarray(chip_confusions), chip_blocks(records, split, block_size))
    if len(units) < 2:
        return {**scores, "ci95": None,
                "ci95_method": f"none: the {split} chips lie in {len(units)} block(s), too few to resample"}
    ci = block_bootstrap(units, list(scores["class_names"]), resamples, seed)
    return {**scores, "ci95": ci,
            "ci95_method": f"block bootstrap over {len(units)} {split} blocks of {block_size} px, {resamples} "
                           f"resamples (seed {seed}), {100 * LEVEL:.0f} % percentile intervals"}
