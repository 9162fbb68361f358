"""Segmentation losses: logits (B, K, H, W) and int64 targets (B, H, W) in, a scalar out.

Every loss skips pixels whose target is ``ignore_index`` (255: nodata and unlabelled pixels),
so they never pull the network either way. Plain torch: the Lightning module and any training
loop of a library user call them the same way, and Hydra builds them from ``_target_``.

Class weights can be computed from the training labels' pixel counts with the heuristics of
the original DeepGeo toolbox (:func:`class_weights_from_counts`); a loss built with a method name
instead of numbers waits for those counts (:func:`set_class_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = 255

# The original toolbox's weighting heuristics (p_c = share of class c among labelled pixels);
# a class with no pixel gets weight 0 in all three, as there.
WEIGHT_METHODS: tuple[str, ...] = (
    "mean_proportion",  # mean(p) / p_c: 1 for a class at its fair share
    "one_minus_proportion",  # 1 - p_c: mild
    "inverse_squared_proportion",  # 1 / p_c**2: strong, for rare classes
)


def class_weights_from_counts(counts: Sequence[float] | torch.Tensor, method: str) -> list[float]:
    """Per-class loss weights from the training labels' pixel counts (one count per class).

    Args:
        counts: labelled pixels of each class (ignored pixels excluded).
        method: one of :data:`WEIGHT_METHODS`.

    Returns:
        K weights; classes without any pixel get 0 (they never occur as a target anyway).
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"Unknown class weight method {method!r}; use one of {list(WEIGHT_METHODS)} "
                         "or give one weight per class.")
    counts_t = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if counts_t.numel() == 0 or (counts_t < 0).any() or counts_t.sum() <= 0:
        raise ValueError(f"class counts must be non-negative with at least one labelled pixel, "
                         f"got {counts_t.tolist()}.")
    present = counts_t > 0
    prop = counts_t / counts_t.sum()
    weights = torch.zeros_like(prop)
    if method == "mean_proportion":
        weights[present] = prop[present].mean() / prop[present]
    elif method == "one_minus_proportion":
        weights[present] = 1 - prop[present]
    else:
        weights[present] = 1 / prop[present] ** 2
    return weights.tolist()


def _check(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0] \
            or logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"{name} expects logits (B, K, H, W) and targets (B, H, W) of the same "
                         f"B, H, W; got {tuple(logits.shape)} and {tuple(target.shape)}. For a "
                         "valid-padding network crop the targets with align_target().")


def _probs_and_onehot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax probabilities and one-hot targets, both zeroed on ignored pixels.

    Returns (probs, onehot, valid) with probs/onehot shaped (B, K, H, W) and valid (B, 1, H, W).
    """
    classes = logits.shape[1]
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= classes))
    if bad.any():
        raise ValueError(f"targets hold values outside 0..{classes - 1} (and {ignore_index} for "
                         f"ignored pixels): {torch.unique(target[bad]).tolist()[:10]}.")
    safe = torch.where(valid, target, torch.zeros_like(target))
    valid_f = valid.unsqueeze(1).to(logits.dtype)
    probs = logits.softmax(dim=1) * valid_f
    onehot = F.one_hot(safe, classes).permute(0, 3, 1, 2).to(logits.dtype) * valid_f
    return probs, onehot, valid_f


def _zero(logits: torch.Tensor) -> torch.Tensor:
    """A zero loss still attached to the graph (all pixels ignored: nothing to learn)."""
    return logits.sum() * 0.0


class CrossEntropyLoss(nn.Module):
    """Pixel cross-entropy, optionally class-weighted, ignoring ``ignore_index``.

    Args:
        class_weights: K weights, or a method name of :data:`WEIGHT_METHODS` computed later from
            the training labels by :func:`set_class_counts`, or None.
        ignore_index: target value skipped.
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.
    """

    def __init__(self, class_weights: Sequence[float] | str | None = None,
                 ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index, self.label_smoothing = ignore_index, float(label_smoothing)
        self.weight_method: str | None = None
        weights = None
        if isinstance(class_weights, str):
            if class_weights not in WEIGHT_METHODS:
                raise ValueError(f"class_weights={class_weights!r}: give one weight per class or "
                                 f"one of {list(WEIGHT_METHODS)}.")
            self.weight_method = class_weights
        elif class_weights is not None:
            weights = torch.tensor([float(w) for w in class_weights], dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def set_class_counts(self, counts: Sequence[float] | torch.Tensor) -> None:
        """Compute the weights from label counts when a method name was given (else no-op)."""
        if self.weight_method is not None:
            weights = class_weights_from_counts(counts, self.weight_method)
            self.class_weights = torch.tensor(weights, dtype=torch.float32)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(logits, target, type(self).__name__)
        if self.weight_method is not None and self.class_weights is None:
            raise RuntimeError(f"class_weights={self.weight_method!r} needs the training label "
                               "counts first: call set_class_counts(counts).")
        weight = self.class_weights
        if weight is not None and weight.numel() != logits.shape[1]:
            raise ValueError(f"class_weights has {weight.numel()} values for {logits.shape[1]} "
                             "model outputs: give one weight per output class.")
        if not (target != self.ignore_index).any():
            return _zero(logits)
        return F.cross_entropy(logits.float(), target,
                               weight=None if weight is None else weight.to(logits.device),
                               ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)


class _OverlapLoss(nn.Module):
    """Shared parts of the soft overlap losses (Dice, IoU): sums over batch and pixels per class."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, smooth: float = 1e-6,
                 classes: Sequence[int] | None = None) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}.")
        self.ignore_index, self.smooth = ignore_index, float(smooth)
        self.classes = None if classes is None else [int(c) for c in classes]

    def _sums(self, logits: torch.Tensor, target: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-class intersection, predicted mass, target mass, and which classes count."""
        _check(logits, target, type(self).__name__)
        probs, onehot, _ = _probs_and_onehot(logits.float(), target, self.ignore_index)
        inter = (probs * onehot).sum(dim=(0, 2, 3))
        pred, truth = probs.sum(dim=(0, 2, 3)), onehot.sum(dim=(0, 2, 3))
        # Classes absent from the batch's targets are left out: their score would be 0/0.
        keep = truth > 0
        if self.classes is not None:
            chosen = torch.zeros_like(keep)
            chosen[self.classes] = True
            keep &= chosen
        return inter, pred, truth, keep


class DiceLoss(_OverlapLoss):
    """1 − mean soft Dice over the classes present in the batch's targets.

    Dice_c = (2·Σ p_c·y_c + s) / (Σ p_c + Σ y_c + s), sums over all valid pixels of the batch,
    which suits rare classes better than cross-entropy (Milletari et al. 2016).

    Args:
        ignore_index: target value skipped.
        smooth: s above; keeps the ratio finite.
        classes: class indices to average over (default: all present).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter, pred, truth, keep = self._sums(logits, target)
        if not keep.any():
            return _zero(logits)
        dice = (2 * inter + self.smooth) / (pred + truth + self.smooth)
        return 1 - dice[keep].mean()


class GeneralizedDiceLoss(_OverlapLoss):
    """1 − generalized Dice (Sudre et al. 2017): classes weighted by 1 / (target pixels)².

    GD = 2·Σ_c w_c·I_c / Σ_c w_c·(P_c + G_c), so a small class counts as much as a large one.
    Classes absent from the batch's targets get weight 0.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter, pred, truth, keep = self._sums(logits, target)
        if not keep.any():
            return _zero(logits)
        w = torch.where(keep, 1 / truth.clamp_min(1.0) ** 2, torch.zeros_like(truth))
        score = (2 * (w * inter).sum() + self.smooth) / ((w * (pred + truth)).sum() + self.smooth)
        return 1 - score


class JaccardLoss(_OverlapLoss):
    """1 − mean soft IoU (Jaccard) over the classes present in the batch's targets.

    IoU_c = (Σ p_c·y_c + s) / (Σ p_c + Σ y_c − Σ p_c·y_c + s).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter, pred, truth, keep = self._sums(logits, target)
        if not keep.any():
            return _zero(logits)
        iou = (inter + self.smooth) / (pred + truth - inter + self.smooth)
        return 1 - iou[keep].mean()


IoULoss = JaccardLoss


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): −α_y·(1 − p_y)^γ·log p_y, mean over valid pixels.

    Down-weights pixels already classified well, so training concentrates on hard ones.

    Args:
        gamma: focusing strength (0 gives cross-entropy).
        alpha: optional K per-class weights α.
        ignore_index: target value skipped.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}.")
        self.gamma, self.ignore_index = float(gamma), ignore_index
        alpha_t = None if alpha is None else torch.tensor([float(a) for a in alpha])
        self.register_buffer("alpha", alpha_t, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(logits, target, type(self).__name__)
        valid = target != self.ignore_index
        if not valid.any():
            return _zero(logits)
        logp = F.log_softmax(logits.float(), dim=1)
        safe = torch.where(valid, target, torch.zeros_like(target))
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)[valid]
        loss = -((1 - logp_t.exp()) ** self.gamma) * logp_t
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ValueError(f"alpha has {self.alpha.numel()} values for {logits.shape[1]} "
                                 "model outputs: give one per output class.")
            loss = loss * self.alpha.to(loss.device)[safe[valid]]
        return loss.mean()


class CombinedLoss(nn.Module):
    """Weighted sum of losses, e.g. cross-entropy + Dice.

    Args:
        terms: ``(loss, weight)`` pairs, or mappings ``{loss: ..., weight: ...}`` (as YAML writes
            them); the weight defaults to 1.
    """

    def __init__(self, terms: Sequence[Any]) -> None:
        super().__init__()
        losses, weights = [], []
        for term in terms:
            if isinstance(term, nn.Module):
                loss, weight = term, 1.0
            elif isinstance(term, Mapping):
                loss, weight = term["loss"], term.get("weight", 1.0)
            else:
                loss, weight = term
            if not callable(loss):
                raise TypeError(f"CombinedLoss term {loss!r} is not a loss (a callable module).")
            losses.append(loss)
            weights.append(float(weight))
        if not losses:
            raise ValueError("CombinedLoss needs at least one (loss, weight) term.")
        self.losses = nn.ModuleList(losses)
        self.weights = weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for loss, weight in zip(self.losses, self.weights, strict=True):
            total = total + weight * loss(logits, target)
        return total


def needs_class_counts(loss: nn.Module) -> bool:
    """True when some part of ``loss`` waits for label counts (a weight method was named)."""
    return any(getattr(m, "weight_method", None) is not None for m in loss.modules())


def set_class_counts(loss: nn.Module, counts: Sequence[float] | torch.Tensor) -> nn.Module:
    """Hand the training labels' per-class pixel counts to every part of ``loss`` that wants them."""
    for module in loss.modules():
        method = getattr(module, "set_class_counts", None)
        if callable(method):
            method(counts)
    return loss


__all__ = [
    "IGNORE_INDEX", "WEIGHT_METHODS", "CombinedLoss", "CrossEntropyLoss", "DiceLoss", "FocalLoss",
    "GeneralizedDiceLoss", "IoULoss", "JaccardLoss", "class_weights_from_counts",
    "needs_class_counts", "set_class_counts",
]
