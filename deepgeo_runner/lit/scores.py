"""torchmetrics states for segmentation scores: confusion matrix, summed cross-entropy and
per-class score histograms.

Their states are sums, so under DDP torchmetrics reduces them exactly across ranks before
:mod:`deepgeo_runner.ml.metrics` turns them into numbers.
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


class ScoreHistograms(Metric):
    """Per class, counts of labelled pixels per softmax-probability bin, apart for the pixels
    of that class (positives) and of the others (negatives): one-vs-rest ROC curves from
    (2, K, B) integers, whatever the number of pixels.

    Bin ``j`` holds probabilities in ``[j / B, (j + 1) / B)`` (probability 1 in the last bin).
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = 255, bins: int = 256) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.num_classes, self.ignore_index, self.bins = num_classes, ignore_index, bins
        self.add_state(
            "counts", torch.zeros(2, num_classes, bins, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != self.ignore_index
        if not valid.any():
            return
        b = self.bins
        probs = logits.float().softmax(dim=1)  # (B, K, H, W)
        truth = target[valid]
        for c in range(self.num_classes):  # one class at a time: temporaries of N pixels, not N × K
            bin_index = (probs[:, c][valid] * b).to(torch.int32).clamp_(0, b - 1)
            # index into (2, B): negatives first, then positives
            codes = (truth == c).to(torch.int32) * b + bin_index
            self.counts[:, c] += torch.bincount(codes, minlength=2 * b).view(2, b)

    def compute(self) -> dict[str, torch.Tensor]:
        return {"positives": self.counts[1], "negatives": self.counts[0]}


def per_sample_confusion(logits: torch.Tensor, target: torch.Tensor, num_classes: int,
                         ignore_index: int = 255) -> torch.Tensor:
    """(B, K * K) confusion counts of each sample of the batch (rows reference): the chips'
    own matrices, which the block bootstrap sums per block."""
    batch, k = target.shape[0], num_classes
    valid = target != ignore_index
    sample = torch.arange(batch, device=target.device).view(-1, *([1] * (target.dim() - 1))).expand_as(target)
    codes = sample[valid] * (k * k) + target[valid] * k + logits.argmax(dim=1)[valid]
    return torch.bincount(codes, minlength=batch * k * k).view(batch, k * k)
