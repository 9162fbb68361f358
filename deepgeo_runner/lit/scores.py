"""A torchmetrics state for segmentation scores: confusion matrix and summed cross-entropy.

Its states are sums, so under DDP torchmetrics reduces them exactly across ranks before
:func:`deepgeo_runner.metrics.scores_from_confusion` turns them into numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric


class ConfusionState(Metric):
    """Confusion matrix (rows reference, columns prediction) and cross-entropy sum."""

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state(
            "confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state("ce_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pixels", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != self.ignore_index
        n = int(valid.sum())
        if n == 0:
            return
        pred = logits.argmax(dim=1)
        k = self.num_classes
        codes = target[valid] * k + pred[valid]
        self.confusion += torch.bincount(codes, minlength=k * k).reshape(k, k)
        ce = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="sum")
        self.ce_sum += ce.double()
        self.pixels += n

    def compute(self) -> dict[str, torch.Tensor]:
        return {"confusion": self.confusion, "ce_sum": self.ce_sum, "pixels": self.pixels}
