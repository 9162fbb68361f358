"""Chip datasets over the on-disk chip store, and samplers that shard them across ranks.

Samples are dicts (``image``, ``mask``) like torchgeo's. The store is a pair of ``.npy``
files per split, memory-mapped lazily in each worker so that opening is free and reading a
chip is one contiguous slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ChipDataset(Dataset):
    """The chips of one split: float32 images (C, h, w) and int64 targets (h, w)."""

    def __init__(self, store_dir: str | Path, split: str) -> None:
        self.image_path = Path(store_dir) / f"{split}_image.npy"
        self.mask_path = Path(store_dir) / f"{split}_mask.npy"
        self._length = int(np.load(self.mask_path, mmap_mode="r").shape[0])
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._images is None:  # opened here so each worker process maps its own view
            self._images = np.load(self.image_path, mmap_mode="r")
            self._masks = np.load(self.mask_path, mmap_mode="r")
        return {
            "image": torch.from_numpy(np.array(self._images[index], dtype=np.float32)),
            "mask": torch.from_numpy(self._masks[index].astype(np.int64)),
        }


class ShardedSampler(Sampler[int]):
    """Indices of one rank's shard: disjoint across ranks, together covering the dataset.

    With ``shuffle`` every epoch draws a new permutation from ``seed + epoch`` (the same on
    every rank, so shards stay disjoint) and pads by wrapping around so that all ranks get
    the same number of batches, as DDP requires. Without it the shard is ``rank::world``,
    unpadded, so evaluation counts every chip exactly once.
    """

    def __init__(
        self, length: int, rank: int = 0, world_size: int = 1, shuffle: bool = False, seed: int = 0
    ) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.length, self.world_size))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        padded = -(-self.length // self.world_size) * self.world_size
        order += order[: padded - self.length]
        return order[self.rank : padded : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())
