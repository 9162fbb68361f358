"""A real torchgeo datamodule over tiny local files, for tests that must never download.

``SquaresDataModule`` is a ``torchgeo.datamodules.NonGeoDataModule`` like LandCoverAIDataModule:
it builds ``SquaresDataset(split=..., root=...)`` per split and runs torchgeo's own kornia
normalization on the device. Images have 3 bands; each holds a few squares of two classes that
differ in colour (class 1 bright in band 0, class 2 bright in band 2) on a noisy background
(class 0), so a small network learns them in a few epochs. Tests import it by ``_target_``
with this folder on PYTHONPATH.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import NonGeoDataset

CLASSES = ("background", "roof", "water")
SPLITS = {"train": 48, "val": 12, "test": 16}


def write_squares(root: str | Path, size: int = 32, seed: int = 0, splits: dict[str, int] = SPLITS) -> Path:
    """Write ``root/<split>.npz`` (image float32 (N, 3, size, size), mask uint8 (N, size, size))."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    signature = np.array([[0.2, 0.2, 0.2], [0.9, 0.3, 0.2], [0.1, 0.3, 0.8]], dtype=np.float32)
    for split, n in splits.items():
        mask = np.zeros((n, size, size), dtype=np.uint8)
        for i in range(n):
            for cls in (1, 2, 1, 2):
                side = int(rng.integers(size // 4, size // 2))
                r, c = rng.integers(0, size - side, 2)
                mask[i, r:r + side, c:c + side] = cls
        image = signature[mask].transpose(0, 3, 1, 2) + rng.normal(0, 0.12, (n, 3, size, size))
        np.savez(root / f"{split}.npz", image=image.astype(np.float32), mask=mask)
    return root


class SquaresDataset(NonGeoDataset):
    """One split of the squares written by :func:`write_squares`; samples as torchgeo gives them."""

    classes = CLASSES

    def __init__(self, root: str | Path = "data", split: str = "train", download: bool = False) -> None:
        path = Path(root) / f"{split}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: write it with write_squares(root)")
        with np.load(path) as data:
            self.images, self.masks = torch.from_numpy(data["image"]), torch.from_numpy(data["mask"])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "mask": self.masks[index].long()}


class SquaresDataModule(NonGeoDataModule):
    """torchgeo's NonGeoDataModule over :class:`SquaresDataset` (images already in [0, 1])."""

    mean = torch.tensor(0.0)
    std = torch.tensor(1.0)

    def __init__(self, batch_size: int = 8, num_workers: int = 0, **kwargs: Any) -> None:
        super().__init__(SquaresDataset, batch_size, num_workers, **kwargs)
