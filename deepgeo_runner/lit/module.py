"""The LightningModule: a network, a loss and scores. The network is injected, never built here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from deepgeo_runner.core.errors import ConfigError, TrainingDiverged
from deepgeo_runner.lit.scores import ConfusionState, ScoreHistograms, per_sample_confusion
from deepgeo_runner.ml.checkpoint import plain_metadata
from deepgeo_runner.ml.losses import CrossEntropyLoss
from deepgeo_runner.ml.metrics import add_pr_scores, add_roc_scores, scores_from_confusion
from deepgeo_runner.ml.model_card import ModelCard
from deepgeo_runner.ml.models import align_target
from deepgeo_runner.ml.teacher import TEACHER_OFFSET, decode


class SegmentationModule(pl.LightningModule):
    """Trains any ``(B, C, H, W) -> (B, K, H, W)`` network with the given loss (cross-entropy
    by default). Networks whose logits are smaller than the input (valid padding) have the
    targets cropped to them through their ``output_crop``.

    Args:
        net: the segmentation network (plain ``nn.Module``).
        optimizer: ``params -> Optimizer`` (a ``_partial_`` from the config).
        scheduler: ``optimizer -> LRScheduler`` or None.
        class_names: the K model outputs' names, for metrics.
        ignore_index: target value skipped by loss and metrics.
        class_weights: optional K weights of the default cross-entropy (when ``loss`` is None).
        loss: ``(logits, target) -> scalar`` module from ``deepgeo_runner.ml.losses`` or the
            ``loss`` config group; it must skip ``ignore_index``.
        inference_meta: what prediction needs later (bands, stats, classes); stored in every
            checkpoint so that a checkpoint alone is enough to classify a new scene.
        compile_net: run the network through ``torch.compile`` (weights stay in ``net``); a string
            names the backend (default ``inductor``; ``aot_eager`` traces without generating code).
            A network that torch.compile cannot handle fails at its first forward with a
            :class:`~deepgeo_runner.core.errors.ConfigError` naming it and ``train.compile``.
        teacher_weight: loss weight of a teacher label (a training mask value ``TEACHER_OFFSET + k``,
            :mod:`deepgeo_runner.ml.teacher`) against a polygon label's 1: a teacher that is sometimes
            wrong guides the borders without outvoting the polygons.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        class_names: Sequence[str],
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        inference_meta: dict | None = None,
        compile_net: bool | str = False,
        loss: torch.nn.Module | None = None,
        teacher_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = net
        # kept outside the module tree so that checkpoints hold the weights once, under net.*
        compiled = None
        if compile_net:
            compiled = torch.compile(net, backend=compile_net) if isinstance(compile_net, str) else torch.compile(net)
        object.__setattr__(self, "_forward_net", compiled if compiled is not None else net)
        self._compile_checked = compiled is None  # the first compiled forward says whether the network compiles
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.loss_fn = loss if loss is not None else CrossEntropyLoss(class_weights, ignore_index)
        self.teacher_weight = float(teacher_weight)
        self.inference_meta = inference_meta or {}
        self.val_state = ConfusionState(len(class_names), ignore_index)
        self.test_state = ConfusionState(len(class_names), ignore_index)
        self.test_histograms = ScoreHistograms(len(class_names), ignore_index)
        self.test_scores: dict | None = None
        self._chip_confusion: torch.Tensor | None = None  # (n test chips, K * K), by chips.json index
        self.test_chip_confusion: Any = None  # (n, K, K) numpy after the test epoch: the bootstrap's units

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self._compile_checked:
            return self._forward_net(image)
        try:
            out = self._forward_net(image)
        except Exception as exc:  # torch.compile fails lazily, at the first call
            try:
                self.net(image)
            except Exception:
                raise exc from None  # the network itself fails: its own error, not compile's
            kind = type(self.net)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConfigError(
                f"train.compile=true: torch.compile cannot compile the model {kind.__module__}.{kind.__qualname__} "
                f"({type(exc).__name__}: {first}). It runs without compile: set train.compile=false "
                "for this model.") from exc
        self._compile_checked = True
        return out

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != self.ignore_index).any():  # an all-ignored batch teaches nothing
            return logits.sum() * 0.0
        if self.teacher_weight == 1.0:  # a teacher label counts as a polygon's: no split, no host sync per step
            return self.loss_fn(logits.float(), decode(target, self.ignore_index))
        taught = (target >= TEACHER_OFFSET) & (target != self.ignore_index)
        if not bool(taught.any()):
            return self.loss_fn(logits.float(), target)
        return self._teacher_weighted_loss(logits.float(), target, taught)

    def _teacher_weighted_loss(self, logits: torch.Tensor, target: torch.Tensor, taught: torch.Tensor) -> torch.Tensor:
        """The loss over polygon and teacher labels, a teacher label counting ``teacher_weight`` of a
        polygon's: the pixel-count-weighted mean of the loss on each kind alone (for a per-pixel mean such
        as cross-entropy, exactly the per-pixel weighted mean), so any loss of the ``loss`` group works."""
        polygons = torch.where(taught, torch.full_like(target, self.ignore_index), target)
        n_polygon = (polygons != self.ignore_index).sum()
        n_taught = taught.sum()
        total = n_polygon + self.teacher_weight * n_taught
        teacher_only = decode(target, self.ignore_index).masked_fill(~taught, self.ignore_index)
        loss = self.teacher_weight * n_taught / total * self.loss_fn(logits, teacher_only)
        if bool(n_polygon > 0):
            loss = loss + n_polygon / total * self.loss_fn(logits, polygons)
        return loss

    def _logits_and_target(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["image"])
        return logits, align_target(logits, batch["mask"], self.net)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits, target = self._logits_and_target(batch)
        loss = self._loss(logits, target)
        self._stop_if_not_finite(loss, batch, batch_idx)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Stop training at the first NaN or infinite loss, before it reaches the weights.

        A diverged run would otherwise go on to write "best" checkpoints, a one-class map and
        NaN metrics, and exit as if it had succeeded. Every rank takes the same decision (one
        tiny all-reduce), so no rank waits forever for another that stopped.
        """
        bad = not bool(torch.isfinite(loss.detach()))
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            if not trainer.strategy.reduce_boolean_decision(bad, all=False):
                return
        elif not bad:
            return
        raise TrainingDiverged(self._divergence_message(loss, batch, batch_idx, bad))

    def _divergence_message(self, loss: torch.Tensor, batch: dict[str, torch.Tensor], batch_idx: int,
                            here: bool) -> str:
        epoch, step = (self.current_epoch, self.global_step) if self._trainer is not None else (0, 0)
        where = f"at epoch {epoch}, step {step} (batch {batch_idx} of the epoch)"
        if not here:
            return f"training diverged {where}: the loss of another rank's batch is not finite (see its log)."
        index = batch.get("index")
        chips = ""
        if isinstance(index, torch.Tensor | list):
            ids = [int(i) for i in (index.tolist() if isinstance(index, torch.Tensor) else index)]
            store = getattr(getattr(self._trainer, "datamodule", None), "store_dir", None)
            listed = ", ".join(map(str, ids[:32])) + (f", ... ({len(ids)} chips)" if len(ids) > 32 else "")
            chips = (f" on the train chips [{listed}] (their 'index' among the train chips of "
                     f"{Path(store) / 'chips.json' if store else 'the chip index chips.json'})")
        lr = ""
        if self._trainer is not None and self.trainer.optimizers:
            lr = f" optimizer.lr is {self.trainer.optimizers[0].param_groups[0]['lr']:g}:"
        return (f"training diverged {where}: the loss is {float(loss.detach()):g}{chips}. Training stopped; the "
                f"checkpoints keep the last finite weights.{lr} lower it (e.g. 10x), set "
                "trainer.gradient_clip_val=1.0, or look at those chips for extreme or invalid values.")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.val_state.update(*self._logits_and_target(batch))

    def on_validation_epoch_end(self) -> None:
        scores = self._scores(self.val_state)
        self.log_dict(
            {"val_loss": scores["cross_entropy"] or 0.0, "val_accuracy": scores["accuracy"],
             "val_f1_macro": scores["f1_macro"], "val_iou_macro": scores["iou_macro"]},
            prog_bar=True, sync_dist=False,  # already reduced across ranks by torchmetrics
        )

    def on_test_epoch_start(self) -> None:
        count = getattr(getattr(self.trainer, "datamodule", None), "test_chip_count", None)
        n = count() if callable(count) else None
        k = len(self.class_names)
        self._chip_confusion = torch.zeros(n, k * k, dtype=torch.long, device=self.device) if n else None
        self.test_chip_confusion = None

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, target = self._logits_and_target(batch)
        self.test_state.update(logits, target)
        self.test_histograms.update(logits, target)
        if self._chip_confusion is not None and isinstance(batch.get("index"), torch.Tensor):
            per_chip = per_sample_confusion(logits, target, len(self.class_names), self.ignore_index)
            self._chip_confusion.index_add_(0, batch["index"].to(self._chip_confusion.device), per_chip)

    def on_test_epoch_end(self) -> None:
        histograms = self.test_histograms.compute()
        self.test_histograms.reset()
        positives, negatives = histograms["positives"].cpu().numpy(), histograms["negatives"].cpu().numpy()
        self.test_scores = add_pr_scores(add_roc_scores(self._scores(self.test_state), positives, negatives),
                                         positives, negatives)
        self._gather_chip_confusion()
        self.log_dict(
            {"test_accuracy": self.test_scores["accuracy"], "test_f1_macro": self.test_scores["f1_macro"]},
            sync_dist=False,
        )

    def _gather_chip_confusion(self) -> None:
        """Sum the per-chip matrices across ranks (each rank scored its own chips) into numpy."""
        chips = self._chip_confusion
        if chips is None:
            return
        if self._trainer is not None and self.trainer.world_size > 1:
            chips = self.trainer.strategy.reduce(chips, reduce_op="sum")
        k = len(self.class_names)
        self.test_chip_confusion = chips.cpu().numpy().reshape(-1, k, k)
        self._chip_confusion = None

    def _scores(self, state: ConfusionState) -> dict:
        totals = state.compute()
        state.reset()
        pixels = int(totals["pixels"])
        ce = float(totals["ce_sum"]) / pixels if pixels else None
        return scores_from_confusion(totals["confusion"].cpu().numpy(), self.class_names, ce)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer=optimizer)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the model card (plain types only, so that the checkpoint loads with torch.load(weights_only=True))
        card = ModelCard.from_dict(plain_metadata(self.inference_meta), "inference_meta")
        checkpoint["deepgeo"] = plain_metadata(card.to_dict())
