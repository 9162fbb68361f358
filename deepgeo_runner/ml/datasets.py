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
from torch.utils.data import BatchSampler, Dataset, Sampler

from deepgeo_runner.ml.augment import dihedral


class ChipDataset(Dataset):
    """The chips of one split: float32 images (C, h, w) and uint8 targets (h, w)."""

    def __init__(self, store_dir: str | Path, split: str, mask: str = "mask",
                 masks: np.ndarray | None = None) -> None:
        self.image_path = Path(store_dir) / f"{split}_image.npy"
        self.mask_path = Path(store_dir) / f"{split}_{mask}.npy"  # mask="plain_mask": without the protocol's ring
        length = int(np.load(self.mask_path, mmap_mode="r").shape[0])
        if masks is not None and masks.shape[0] != length:
            raise ValueError(f"{len(masks)} replacement masks for the {length} chips of {self.mask_path}")
        self._length = length
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = masks  # in memory: the training masks with teacher labels

    def __len__(self) -> int:
        return self._length

    def _open(self) -> None:
        if self._images is None:  # opened here so each worker process maps its own view
            self._images = np.load(self.image_path, mmap_mode="r")
            if self._masks is None:
                self._masks = np.load(self.mask_path, mmap_mode="r")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self._open()
        return {
            "image": torch.from_numpy(np.array(self._images[index], dtype=np.float32)),
            "mask": torch.from_numpy(np.array(self._masks[index])),
            "index": int(index),  # the chip's ``index`` in chips.json (within its split)
        }

    def read_batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch in one memory-mapped read.

        Indices are read in ascending order (the order inside a batch carries no meaning),
        as one slice when they are consecutive, so the batch is copied exactly once.
        Masks stay uint8 here and become int64 on the device, 8× less to move.
        """
        self._open()
        idx = np.sort(np.asarray(indices))
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1:  # a view of the file: copy it once
            first, stop = int(idx[0]), int(idx[-1]) + 1
            images, masks = np.array(self._images[first:stop]), np.array(self._masks[first:stop])
        else:  # fancy indexing already copies; a second copy would halve the throughput
            images, masks = self._images[idx], self._masks[idx]
        return {"image": torch.from_numpy(np.asarray(images, dtype=np.float32)),
                "mask": torch.from_numpy(np.asarray(masks)),
                "index": torch.from_numpy(idx.astype(np.int64))}  # chips.json ``index`` of each sample

    def load_all(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split as arrays (for device-resident training)."""
        self._open()
        return np.array(self._images, dtype=np.float32), np.array(self._masks)


class BatchReader(Dataset):
    """Wraps a ChipDataset so that a DataLoader fetches whole batches in one read.

    Use with ``batch_size=None`` and a batch sampler as the sampler: each item is a list of
    indices, which costs one memmap read instead of one per chip plus a collate copy.
    """

    def __init__(self, chips: ChipDataset) -> None:
        self.chips = chips

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.chips.read_batch(indices)


class ExpandedDataset(Dataset):
    """The paper's deterministic expansion: every chip plus one transformed copy per op.

    Item ``i`` is chip ``i // (1 + len(ops))`` under op ``i % (1 + len(ops))`` (0 = itself),
    so 2,000 chips with 6 ops become 14,000 samples, all seen every epoch.
    """

    def __init__(self, chips: Dataset, ops: list[int]) -> None:
        self.chips, self.ops, self._dihedral = chips, [0] + list(ops), dihedral

    def __len__(self) -> int:
        return len(self.chips) * len(self.ops)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        chip, k = divmod(index, len(self.ops))
        sample = self.chips[chip]
        op = self.ops[k]
        return {"image": self._dihedral(sample["image"], op).contiguous(),
                "mask": self._dihedral(sample["mask"], op).contiguous(), "index": chip}


class EpochBatchSampler(BatchSampler):
    """A BatchSampler that passes ``set_epoch`` on to its sampler.

    Given to a DataLoader as its ``sampler`` (batch_size=None, whole batches read at once),
    Lightning's per-epoch ``set_epoch`` reaches only this object; without passing it on, every
    epoch would draw the same order.
    """

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


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
