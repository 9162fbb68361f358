"""The LightningDataModule over a chip store; augmentation runs on the device per batch.

Two ways to feed the model:

* from disk: one memory-mapped read per batch (``BatchReader``), in worker processes;
* resident: the split is copied once into device memory and each batch is gathered there
  by index, so the loader moves only indices (``resident=True``; ``"auto"``: on a GPU when the
  store fits a share of its free memory, see :func:`resident_decision`; never on the CPU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepgeo_runner.lit.guards import epoch_seed
from deepgeo_runner.ml.augment import EXPAND_DEFAULT, op_index, photometric, random_dihedral
from deepgeo_runner.ml.choices import Augmentation  # noqa: E402
from deepgeo_runner.ml.copy_paste import copy_paste
from deepgeo_runner.ml.datasets import BatchReader, ChipDataset, EpochBatchSampler, ExpandedDataset, ShardedSampler
from deepgeo_runner.ml.teacher import decode as decode_teacher

log = logging.getLogger(__name__)
AUGMENTATIONS = tuple(a.value for a in Augmentation)
RESIDENT_SHARE = 0.5  # data.device_resident=auto: the store may take this share of the device's free memory
RESIDENT_SETTINGS = ("auto", True, False)


def resident_decision(setting: bool | str, device_type: str, store_bytes: int,
                      free_bytes: int | None = None, share: float = RESIDENT_SHARE) -> tuple[bool, str]:
    """Whether the chip store goes to device memory, and why (one line for the log).

    ``setting``: ``True``/``False`` (as given) or ``"auto"``: on an accelerator when
    ``store_bytes`` ≤ ``share`` × ``free_bytes`` (``torch.cuda.mem_get_info``), never on the CPU
    (the chip store's memory-mapped batches are the CPU path).
    """
    if setting not in RESIDENT_SETTINGS:
        raise ValueError(f"data.device_resident must be auto, true or false, got {setting!r}")
    if setting is not True and setting is not False:  # auto
        if device_type == "cpu":
            return False, "data.device_resident=auto: off on the CPU (batches are read from the memory-mapped store)"
        if free_bytes is None:
            return False, f"data.device_resident=auto: off ({device_type}: free memory unknown)"
        fits = store_bytes <= share * free_bytes
        return fits, (f"data.device_resident=auto: {'on' if fits else 'off'} (chip store {store_bytes / 2**20:.0f} MiB "
                      f"{'≤' if fits else '>'} {share:.0%} of {free_bytes / 2**20:.0f} MiB free on {device_type})")
    return bool(setting), f"data.device_resident={'true' if setting else 'false'}"


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (CUDA: ``torch.cuda.mem_get_info``); None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return None


@dataclass(frozen=True)
class AugmentPlan:
    """Train-time augmentation: the mode, the ops of the expansion, photometric strengths."""

    name: str = "none"
    expand_ops: tuple[str, ...] = field(default=EXPAND_DEFAULT)
    brightness: float = 0.0
    noise_std: float = 0.0
    copy_paste: float = 0.0  # share of training chips that get another chip's labelled pixels pasted on
    copy_paste_edge: float = 0.0  # softness (Gaussian sigma, pixels) of the pasted border; 0: sharp
    teacher: float = 0.0  # confidence of the pixel teacher's labels between the polygons (ml/teacher.py); 0: off
    teacher_weight: float = 1.0  # below 1, training masks keep the teacher's codes for the module's weighted loss

    def __post_init__(self) -> None:
        if self.name not in AUGMENTATIONS:
            raise ValueError(f"augmentation '{self.name}' unknown; choose from {AUGMENTATIONS}")
        for op in self.expand_ops:
            op_index(op)


class _IndexBatches(Dataset):
    """Yields ``{"split", "index"}`` batches for device-resident gathering."""

    def __init__(self, split: str, length: int) -> None:
        self.split, self.length = split, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, indices: list[int]) -> dict[str, Any]:
        return {"split": self.split, "index": torch.as_tensor(indices, dtype=torch.long)}


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
        augmentation: AugmentPlan | str = "none",
        seed: int = 0,
        resident: bool | str = False,
        test_split: str = "test",
        train_masks: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.test_split = test_split
        self.train_masks = train_masks  # the store's training masks plus teacher labels (ml/teacher.py)
        self.plan = augmentation if isinstance(augmentation, AugmentPlan) else AugmentPlan(augmentation)
        self.store_dir = Path(store_dir)
        self.batch_size, self.num_workers = batch_size, num_workers
        if resident not in RESIDENT_SETTINGS:
            raise ValueError(f"resident must be auto, true or false, got {resident!r}")
        self.seed, self.resident_setting = seed, resident
        self.resident = resident is True  # "auto" is decided in setup, once the device is known
        self.resident_reason = ""
        self.datasets: dict[str, ChipDataset] = {}
        self._generator: torch.Generator | None = None
        self._generator_epoch = -1
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def _test_source(self) -> str:
        """The dataset the test scores: the test split's plain masks where the store has them (an ignore ring
        of the protocol is in ``{split}_mask.npy``: the loss and the protocol's scores), else its masks."""
        plain = f"{self.test_split}_plain"
        return plain if (self.store_dir / f"{plain}_mask.npy").exists() else self.test_split

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets and (self.store_dir / f"{split}_mask.npy").exists():
                masks = self.train_masks if split == "train" else None
                self.datasets[split] = ChipDataset(self.store_dir, split, masks=masks)
        source = self._test_source
        if source != self.test_split and source not in self.datasets:  # the protocol's plain test masks
            self.datasets[source] = ChipDataset(self.store_dir, self.test_split, mask="plain_mask")
        if self.resident_setting == "auto" and not self.resident_reason:
            trainer = self.trainer
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            self.resident, self.resident_reason = resident_decision(
                "auto", device.type, self.store_bytes(), free_device_memory(device))
            log.info("%s", self.resident_reason)

    def store_bytes(self) -> int:
        """Bytes of the store's splits (images float32 and masks), as they would sit in device memory."""
        return sum(p.stat().st_size for split in ("train", "val", "test")
                   for p in (self.store_dir / f"{split}_image.npy", self.store_dir / f"{split}_mask.npy")
                   if p.exists())

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        chips = self.datasets[split]
        rank, world = self._rank_world()
        expand = shuffle and self.plan.name == "d4_expand"
        dataset: Dataset = (
            ExpandedDataset(chips, [op_index(o) for o in self.plan.expand_ops]) if expand else chips
        )
        sampler = ShardedSampler(len(dataset), rank, world, shuffle=shuffle, seed=self.seed)
        drop_last = shuffle and len(sampler) > self.batch_size  # no 1-sample BatchNorm batch
        workers = dict(num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        if expand:  # per-sample transforms: the plain per-item path
            return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                              drop_last=drop_last, pin_memory=torch.cuda.is_available(), **workers)
        batches = EpochBatchSampler(sampler, self.batch_size, drop_last)
        if self.resident:
            return DataLoader(_IndexBatches(split, len(chips)), batch_size=None, sampler=batches)
        return DataLoader(BatchReader(chips), batch_size=None, sampler=batches,
                          pin_memory=torch.cuda.is_available(), **workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._test_source, shuffle=False)

    def test_chip_count(self) -> int | None:
        """Chips of the scored split (their ``index`` runs 0..n-1): the size of the per-chip scores."""
        chips = self.datasets.get(self._test_source)
        return len(chips) if chips is not None else None

    def _gather(self, batch: dict[str, Any]) -> dict[str, Any]:
        split, index = batch["split"], batch["index"]
        if split not in self._on_device:
            images, masks = self.datasets[split].load_all()
            device = index.device
            self._on_device[split] = (torch.from_numpy(images).to(device),
                                      torch.from_numpy(masks).to(device))
        images, masks = self._on_device[split]
        return {"image": images[index], "mask": masks[index], "index": index}

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if "split" in batch:
            batch = self._gather(batch)
        batch["mask"] = batch["mask"].long()
        trainer = self.trainer
        if trainer is None or not trainer.training:
            batch["mask"] = decode_teacher(batch["mask"])
            return batch
        if self._generator is None or self._generator_epoch != trainer.current_epoch:
            # seeded per epoch: a resumed run augments each epoch as an uninterrupted one does
            self._generator = torch.Generator().manual_seed(
                epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank))
            self._generator_epoch = trainer.current_epoch
        batch = augment_batch(batch, self.plan, self._generator)
        if self.plan.teacher_weight == 1.0:  # else the module weighs the teacher's codes (SegmentationModule._loss)
            batch["mask"] = decode_teacher(batch["mask"])  # after copy-paste, which moves the polygons' labels only
        return batch


def augment_batch(batch: dict[str, Any], plan: AugmentPlan, generator: torch.Generator) -> dict[str, Any]:
    """The plan's per-batch augmentation (``d4`` and photometric) of a training batch on its device.

    ``d4_expand`` is not done here: it is a fixed expansion of the dataset (see ``ChipDataModule``).
    """
    if plan.name == "d4":
        batch["image"], batch["mask"] = random_dihedral(batch["image"], batch["mask"], generator)
    if plan.copy_paste > 0:
        batch["image"], batch["mask"] = copy_paste(batch["image"], batch["mask"], generator, plan.copy_paste,
                                                    edge_sigma=plan.copy_paste_edge)
    batch["image"] = photometric(batch["image"], generator, plan.brightness, plan.noise_std)
    return batch
