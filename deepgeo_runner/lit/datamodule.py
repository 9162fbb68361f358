"""The LightningDataModule over a chip store; augmentation runs on the device per batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from deepgeo_runner.ml.augment import random_dihedral
from deepgeo_runner.ml.datasets import ChipDataset, ShardedSampler

AUGMENTATIONS = ("none", "d4")


class ChipDataModule(pl.LightningDataModule):
    """Train/val/test loaders over ``store_dir``, sharded by rank without duplicates in eval.

    Run the Trainer with ``use_distributed_sampler=False``: sharding is done here, so that
    test metrics count every chip exactly once however many ranks there are.
    """

    def __init__(
        self,
        store_dir: str | Path,
        batch_size: int = 16,
        num_workers: int = 0,
        augmentation: str = "none",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation '{augmentation}' unknown; choose from {AUGMENTATIONS}")
        self.store_dir = Path(store_dir)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.augmentation, self.seed = augmentation, seed
        self.datasets: dict[str, ChipDataset] = {}
        self._generator: torch.Generator | None = None

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets and (self.store_dir / f"{split}_mask.npy").exists():
                self.datasets[split] = ChipDataset(self.store_dir, split)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        rank, world = self._rank_world()
        sampler = ShardedSampler(len(dataset), rank, world, shuffle=shuffle, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle and len(sampler) > self.batch_size,  # no 1-sample BatchNorm batch
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        trainer = self.trainer
        if self.augmentation == "d4" and trainer is not None and trainer.training:
            if self._generator is None:
                rank = trainer.global_rank
                self._generator = torch.Generator().manual_seed(self.seed * 1000 + rank)
            batch["image"], batch["mask"] = random_dihedral(batch["image"], batch["mask"], self._generator)
        return batch
