"""Any torchgeo segmentation datamodule, feeding :class:`~deepgeo_runner.lit.module.SegmentationModule`.

torchgeo's datamodules (LandCover.ai, Chesapeake, ...) yield ``{"image", "mask"}`` dicts, but
masks come as (B, H, W) or (B, 1, H, W), integer or (after kornia) float, and their "no label"
value is the dataset's own (often 0). :class:`TorchGeoAdapter` wraps such a datamodule
unchanged — its download, splits, samplers and own augmentation all still run — and hands the
module batches in our contract: float images (B, C, H, W), int64 masks (B, H, W) with 255 for
pixels that loss and metrics skip. Wrapping rather than subclassing keeps any datamodule class
usable by ``_target_``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.lit.datamodule import AugmentPlan, augment_batch

IGNORE_INDEX = 255  # the target value our losses and metrics skip


CHECKED_BATCHES = 16  # per loader: a wrong class count shows at once, without a sync every step


def segmentation_batch(
    batch: dict[str, Any], num_classes: int, in_channels: int | None = None, ignore_value: int | None = None,
    check_values: bool = True,
) -> dict[str, torch.Tensor]:
    """``{"image": float (B, C, H, W), "mask": int64 (B, H, W)}`` from a torchgeo batch.

    Args:
        batch: a collated torchgeo sample dict; keys other than image and mask are dropped.
        num_classes: mask values 0..num_classes-1 are classes; any other value is an error
            (it would silently corrupt the confusion matrix).
        in_channels: when given, the band count the network was built for.
        ignore_value: the dataset's "no label" mask value, turned into 255 (skipped).
        check_values: check the mask's value range (one host-device sync; the adapter checks
            only the first batches of each loader).
    """
    if not isinstance(batch, dict) or "image" not in batch or "mask" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"a torchgeo segmentation datamodule yields dicts with 'image' and 'mask'; got {keys}. "
                         "Is data.datamodule._target_ a semantic-segmentation datamodule?")
    image, mask = batch["image"], batch["mask"]
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if image.ndim != 4 or mask.ndim != 3 or mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"expected image (B, C, H, W) and mask (B, H, W) or (B, 1, H, W) of the same B, H, W; "
                         f"got image {tuple(image.shape)} and mask {tuple(batch['mask'].shape)}.")
    if in_channels is not None and image.shape[1] != in_channels:
        raise ValueError(f"the datamodule's images have {image.shape[1]} bands but the network was built for "
                         f"{in_channels}: set data.in_channels={image.shape[1]}.")
    mask = (mask.round() if mask.is_floating_point() else mask).long()
    if ignore_value is not None:
        mask = mask.masked_fill(mask == ignore_value, IGNORE_INDEX)
    if not check_values:
        return {"image": image.float(), "mask": mask}
    labelled = mask[mask != IGNORE_INDEX]
    low, high = (int(v) for v in torch.aminmax(labelled)) if labelled.numel() else (0, 0)
    if low < 0 or high >= num_classes:
        bad = high if high >= num_classes else low
        raise ValueError(f"the mask holds the value {bad}, but data.classes names {num_classes} classes "
                         f"(mask values 0..{num_classes - 1}): name one class per mask value, or set "
                         f"data.ignore_index={bad} if it means 'no label'.")
    return {"image": image.float(), "mask": mask}


class TorchGeoAdapter(pl.LightningDataModule):
    """Delegates to a torchgeo datamodule, then adapts (and optionally augments) its batches.

    Args:
        datamodule: the torchgeo (or any) LightningDataModule yielding image/mask dicts.
        num_classes: the network's outputs; mask values must lie in 0..num_classes-1.
        in_channels: the band count the network expects (checked on the first batches).
        ignore_value: the dataset's "no label" mask value, skipped by loss and metrics.
        augmentation: our per-batch augmentation, applied to training batches after the
            datamodule's own; ``none`` leaves them to the datamodule.
        seed: seeds that augmentation.
    """

    def __init__(self, datamodule: pl.LightningDataModule, num_classes: int, in_channels: int | None = None,
                 ignore_value: int | None = None, augmentation: AugmentPlan | None = None, seed: int = 0) -> None:
        super().__init__()
        if augmentation is not None and augmentation.name == "d4_expand":
            raise ValueError("augmentation d4_expand copies a chip store; use d4 or none with a torchgeo datamodule.")
        self.datamodule = datamodule
        self.num_classes, self.in_channels, self.ignore_value = num_classes, in_channels, ignore_value
        self.plan = augmentation or AugmentPlan("none")
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._checked: dict[tuple[str, int], int] = {}  # batches whose mask values were checked, per loader

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.world_size > 1 and _samples_by_geography(self.datamodule):
            raise ConfigError(
                f"{type(self.datamodule).__name__} is a torchgeo GeoDataModule: its batch sampler cannot be "
                "sharded across processes by Lightning. Train it on one device (trainer=default trainer.devices=1)."
            )
        self.datamodule.trainer = self.trainer  # its batch hooks look at the trainer's state
        self.datamodule.setup(stage)

    def train_dataloader(self) -> DataLoader:
        return self.datamodule.train_dataloader()

    def val_dataloader(self) -> DataLoader:
        return self.datamodule.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.datamodule.test_dataloader()

    def state_dict(self) -> dict[str, Any]:
        return self.datamodule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.datamodule.load_state_dict(state_dict)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.datamodule.on_before_batch_transfer(batch, dataloader_idx)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return self.datamodule.transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> dict[str, torch.Tensor]:
        batch = self.datamodule.on_after_batch_transfer(batch, dataloader_idx)
        trainer = self.trainer
        loader = (str(trainer.state.stage) if trainer is not None else "", dataloader_idx)
        seen = self._checked.get(loader, 0)
        self._checked[loader] = seen + 1
        batch = segmentation_batch(batch, self.num_classes, self.in_channels, self.ignore_value,
                                   check_values=seen < CHECKED_BATCHES)
        if trainer is None or not trainer.training or self.plan.name == "none":
            return batch
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed * 1000 + trainer.global_rank)
        return augment_batch(batch, self.plan, self._generator)


def _samples_by_geography(datamodule: pl.LightningDataModule) -> bool:
    try:
        from torchgeo.datamodules import GeoDataModule
    except ImportError:
        return False
    return isinstance(datamodule, GeoDataModule)
