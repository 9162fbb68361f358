"""Checkpoints that run no code, survive a full disk and a moved folder, and resume exactly;
training that stops on a non-finite loss. In-process, on a tiny chip store (seconds).
"""

from __future__ import annotations

import csv
import errno
import json
import math
import shutil
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from deepgeo_runner.core.errors import ConfigError, DiskFullError, InputDataError, TrainingDiverged
from deepgeo_runner.core.history import HISTORY_FILE, read_history, write_history
from deepgeo_runner.lit.callbacks import TrainingHistory
from deepgeo_runner.lit.checkpoints import RunCheckpoint, SafeCheckpointIO
from deepgeo_runner.lit.datamodule import ChipDataModule
from deepgeo_runner.lit.guards import EpochSeed
from deepgeo_runner.lit.logs import HistoryCSVLogger
from deepgeo_runner.lit.module import SegmentationModule
from deepgeo_runner.ml import checkpoint as ckpt_io
from deepgeo_runner.ml.checkpoint import load_checkpoint, plain_metadata, save_checkpoint_atomic
from deepgeo_runner.ml.datasets import EpochBatchSampler, ShardedSampler
from deepgeo_runner.ml.metrics import strict_json
from deepgeo_runner.ml.model_card import checkpoint_meta
from deepgeo_runner.stages import train
from deepgeo_runner.stages.apply import read_checkpoint
from tests.helpers import write_noise_store
from tests.helpers.models import crafted_checkpoint

CHIPS, BATCH = 32, 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def store(tmp_path) -> Path:
    """A tiny chip store: band 0 says the class (with noise)."""
    return write_noise_store(tmp_path / "store", {"train": CHIPS, "val": 8}, bands=4, signal=2.0)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(8, 2, 1))


def fit(store: Path, run_dir: Path, epochs: int, resume: Path | None = None, lr: float = 0.01,
        logger=False, history: bool = False, **options) -> pl.Trainer:
    """A run like the runner's: RunCheckpoint, EpochSeed, SafeCheckpointIO. ``history``: as
    conf/callbacks/default.yaml builds them, the checkpoint folder taken from the Trainer's
    run directory, and TrainingHistory."""
    torch.manual_seed(0)
    module = SegmentationModule(tiny_net(), partial(torch.optim.AdamW, lr=lr), None, ["a", "b"],
                                inference_meta={"model": {"_target_": "tests.tiny_net"}, "stats": np.float32(1.5)})
    checkpoint = RunCheckpoint(None if history else run_dir / "checkpoints", "val_loss", "min")
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, deterministic=True, default_root_dir=str(run_dir),
        callbacks=[checkpoint, EpochSeed(0), *([TrainingHistory()] if history else [])],
        plugins=[SafeCheckpointIO()], log_every_n_steps=1, **options,
    )
    train.fit(trainer, module, ChipDataModule(store, BATCH, 0, "d4", 0), resume)
    return trainer


# --- 1. a checkpoint runs no code ---------------------------------------------------------------

def test_a_crafted_checkpoint_creates_nothing_and_is_refused_naming_the_file(tmp_path):
    target = tmp_path / "pwned"
    path = crafted_checkpoint(tmp_path / "model.ckpt", target)
    with pytest.raises(InputDataError, match=r"model\.ckpt' was refused.*it calls io\.open.*nothing in it was run"):
        read_checkpoint(path)  # predict.checkpoint with predict.image
    with pytest.raises(InputDataError, match="refused"):
        SafeCheckpointIO().load_checkpoint(path, weights_only=False)  # Lightning's resume / test
    module = SegmentationModule(tiny_net(), partial(torch.optim.AdamW), None, ["a", "b"])
    with pytest.raises(InputDataError, match="refused"):
        train.load_weights(module, path)  # predict within a run
    assert not target.exists()
    torch.load(path, weights_only=False)  # the file really is harmful: the unsafe load creates it
    assert target.exists()


def test_a_truncated_or_foreign_file_is_named_with_the_fix(tmp_path):
    good = save_checkpoint_atomic({"state_dict": {"net.w": torch.ones(1000)}}, tmp_path / "good.ckpt")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputDataError, match=r"cannot read checkpoint '.*cut\.ckpt'.*truncated"):
        load_checkpoint(cut)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(InputDataError, match=r"notes\.ckpt"):
        load_checkpoint(text)


def test_checkpoint_metadata_is_stored_as_plain_types():
    meta = plain_metadata({"stats": {"shift": np.array([1.0, 2.0]), "n": np.int64(3)}, "dates": ("a",),
                           "path": Path("/x")})
    assert meta == {"stats": {"shift": [1.0, 2.0], "n": 3}, "dates": ["a"], "path": "/x"}
    assert type(meta["stats"]["n"]) is int
    with pytest.raises(TypeError, match=r"deepgeo\.net holds a Sequential"):
        plain_metadata({"net": tiny_net()})


# --- 3, 4. exact resume, atomic writes ----------------------------------------------------------

def test_last_checkpoint_is_written_every_epoch_even_without_improvement(store, tmp_path):
    fit(store, tmp_path / "run", 3, lr=0.0)  # nothing learns: val_loss never improves after epoch 0
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert (last["epoch"], best["epoch"]) == (2, 0)
    assert last["global_step"] == 3 * CHIPS // BATCH
    assert isinstance(checkpoint_meta(last["deepgeo"])["stats"], float)  # numpy metadata stored plain
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_resumed_run_equals_an_uninterrupted_one(store, tmp_path):
    """Dropout and d4 augmentation draw random numbers: seeded per epoch, a relaunch repeats them."""
    whole = fit(store, tmp_path / "whole", 3)
    fit(store, tmp_path / "part", 1)
    resumed = fit(store, tmp_path / "part", 3, resume=tmp_path / "part" / "checkpoints" / "last.ckpt")
    a, b = whole.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert float(whole.checkpoint_callback.best_model_score) == float(resumed.checkpoint_callback.best_model_score)


def test_a_full_disk_leaves_the_last_checkpoint_intact_and_a_relaunch_resumes(store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    fit(store, run, 1)
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def full_disk(path: Path, data: bytes) -> None:  # half the file reaches the disk, then ENOSPC
        path.write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt_io, "_write_bytes", full_disk)
    with pytest.raises(DiskFullError, match=r"no space left on the device to write checkpoint '.*\.ckpt'.*"
                                               r"previous checkpoint under that name is intact.*resumes"):
        fit(store, run, 3, resume=last)
    assert last.read_bytes() == before  # nothing truncated under the real name
    assert load_checkpoint(last)["epoch"] == 0
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temporary left
    monkeypatch.undo()  # space freed
    fit(store, run, 3, resume=last)
    assert load_checkpoint(last)["global_step"] == 3 * CHIPS // BATCH


def test_a_moved_run_directory_keeps_its_best_checkpoint_record(store, tmp_path):
    fit(store, tmp_path / "a", 2)
    state = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt")
    (key, record), = state["callbacks"].items()
    assert key.startswith("ModelCheckpoint{")  # the key of Lightning's own callback: older runs resume too
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = RunCheckpoint(tmp_path / "b" / "checkpoints", "val_loss", "min")
    moved.load_state_dict(record)
    assert moved.best_model_path == str(tmp_path / "b" / "checkpoints" / "best.ckpt")
    assert float(moved.best_model_score) == float(record["best_model_score"])  # Lightning would drop it
    assert list(moved.best_k_models) == [moved.best_model_path]


def test_training_curves_survive_a_relaunch(store, tmp_path):
    run = tmp_path / "run"

    def logged() -> list[dict]:
        with open(run / "logs" / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))

    fit(store, run, 2, logger=HistoryCSVLogger(save_dir=str(run), name="logs", version=""))
    first = logged()
    assert {r["epoch"] for r in first} == {"0", "1"}
    extra = dict(first[-1], epoch="2", step="99")  # a row of an epoch cut short by a kill
    with open(run / "logs" / "metrics.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(first[0])).writerow(extra)
    logger = HistoryCSVLogger(save_dir=str(run), name="logs", version="")
    logger.resume_after_epoch = 1
    fit(store, run, 3, resume=run / "checkpoints" / "last.ckpt", logger=logger)
    rows = logged()
    assert rows[: len(first)] == first  # the first part kept, the cut-short row dropped
    assert {r["epoch"] for r in rows[len(first):]} == {"2"} and "99" not in {r["step"] for r in rows}


def test_the_history_of_a_killed_moved_and_relaunched_run_equals_an_uninterrupted_ones(store, tmp_path):
    """logs/history.csv without any logger: the epochs of the resumed checkpoint kept, a row of an
    epoch cut short dropped, the rest appended; checkpoints in the (moved) run directory."""
    whole, killed, moved = tmp_path / "whole", tmp_path / "killed", tmp_path / "moved"
    fit(store, whole, 3, history=True)
    rows = read_history(whole / HISTORY_FILE)
    assert [(r["epoch"], r["step"]) for r in rows] == [(0, 4), (1, 8), (2, 12)]
    assert set(rows[0]) == {"epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_f1_macro",
                            "val_iou_macro"}
    assert not (whole / "lightning_logs").exists() and (whole / "checkpoints" / "best.ckpt").is_file()

    fit(store, killed, 2, history=True)
    part = read_history(killed / HISTORY_FILE)
    write_history(killed / HISTORY_FILE, [*part, dict(part[-1], epoch=2, step=99)])  # killed before last.ckpt
    shutil.move(killed, moved)
    trainer = fit(store, moved, 3, resume=moved / "checkpoints" / "last.ckpt", history=True)
    assert trainer.checkpoint_callback.best_model_path == str(moved / "checkpoints" / "best.ckpt")
    assert (moved / HISTORY_FILE).read_text() == (whole / HISTORY_FILE).read_text()


def test_a_new_run_starts_a_new_history(store, tmp_path):
    write_history(tmp_path / HISTORY_FILE, [{"epoch": e, "step": e, "val_loss": 9.0} for e in range(5)])
    fit(store, tmp_path, 1, history=True)
    assert [r["epoch"] for r in read_history(tmp_path / HISTORY_FILE)] == [0]


def test_the_history_has_validation_scores_only_for_epochs_that_validated(store, tmp_path):
    fit(store, tmp_path, 3, history=True, check_val_every_n_epoch=2)
    first, second, third = read_history(tmp_path / HISTORY_FILE)
    assert "val_loss" in second and second["epoch"] == 1
    assert set(first) == set(third) == {"epoch", "step", "train_loss"}  # not the scores Lightning keeps


def test_every_epoch_draws_a_new_order():
    sampler = EpochBatchSampler(ShardedSampler(64, shuffle=True, seed=0), 8, False)
    first = list(sampler)
    sampler.set_epoch(1)  # what Lightning calls on the DataLoader's sampler each epoch
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


# --- 2. a non-finite loss stops training ------------------------------------------------------

class Exploding(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 2, *x.shape[-2:]), float("nan")) + 0 * x[:, :2]


def test_a_non_finite_loss_stops_naming_the_epoch_step_and_chips():
    module = SegmentationModule(Exploding(), partial(torch.optim.AdamW), None, ["a", "b"])
    batch = {"image": torch.ones(3, 4, 8, 8), "mask": torch.zeros(3, 8, 8, dtype=torch.long),
             "index": torch.tensor([4, 17, 30])}
    with pytest.raises(TrainingDiverged, match=r"at epoch 0, step 0 \(batch 5 of the epoch\): the loss is nan "
                                               r"on the train chips \[4, 17, 30\].*chips\.json.*gradient_clip_val"):
        module.training_step(batch, 5)


def test_a_diverging_fit_stops_at_once(store, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch \d+, step \d+.*train chips \[.*"
                                               r"store.chips\.json.*optimizer\.lr is 1e\+06"):
        fit(store, tmp_path / "run", 3, lr=1e6)


def test_metrics_json_is_strict():
    text = strict_json({"f1": float("nan"), "auc": np.float32(0.5), "per": [math.inf, 1.0]})
    assert json.loads(text) == {"f1": None, "auc": 0.5, "per": [None, 1.0]}
    assert "NaN" not in text and "Infinity" not in text


# --- the monitored score's direction ------------------------------------------------------------

@pytest.mark.parametrize("overrides, mode", [([], "max"), (["train.monitor=val_loss"], "min"),
                                             (["train.monitor=val_loss", "train.monitor_mode=min"], "min")])
def test_the_monitor_direction_is_known(overrides, mode, compose):
    from deepgeo_runner.config.validate import monitor_mode, validate_config

    cfg = compose("paths.output_dir=/tmp/x", *overrides)
    validate_config(cfg)
    assert monitor_mode(cfg.train) == mode


@pytest.mark.parametrize("overrides, message", [
    (["train.monitor=val_loss", "train.monitor_mode=max"],
     r"keep the checkpoint of the highest loss.*monitor_mode=min"),
    (["train.monitor=val_f1"], r"train\.monitor='val_f1'.*did you mean val_f1_macro"),
])
def test_a_wrong_monitor_fails_with_the_config(overrides, message, compose):
    from deepgeo_runner.config.validate import validate_config

    with pytest.raises(ConfigError, match=message):
        validate_config(compose("paths.output_dir=/tmp/x", *overrides))


def test_a_search_optimizes_the_monitor_in_its_direction(compose):
    from deepgeo_runner.cli import _check_search_direction

    loss = compose("paths.output_dir=/tmp/x", "train.monitor=val_loss")
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.direction=maximize but train\.monitor=val_loss is better "
                                          r"when lower: set hydra\.sweeper\.direction=minimize"):
        _check_search_direction(loss, "maximize")
    _check_search_direction(loss, "minimize")
    _check_search_direction(compose("paths.output_dir=/tmp/x"), "maximize")


def test_resuming_a_checkpoint_whose_optimizer_tracked_other_weights_says_what_to_do(store, tmp_path):
    """A default U-Net run of an earlier version kept the unused encoder stage: its weights still load
    (the stage is skipped) but its optimizer state cannot continue training the smaller network."""
    from types import SimpleNamespace

    from deepgeo_runner.config.schema import TrainConfig
    from deepgeo_runner.pipeline.learning import resume_checkpoint

    fit(store, tmp_path / "run", 1)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = load_checkpoint(last)
    state["optimizer_states"][0]["param_groups"][0]["params"].append(99)  # one tensor more than the net trains
    save_checkpoint_atomic(state, last)
    opts = SimpleNamespace(train=TrainConfig(resume=True))  # the one option resuming reads
    module = SegmentationModule(tiny_net(), partial(torch.optim.AdamW), None, ["a", "b"])
    with pytest.raises(ConfigError, match=r"optimizer state of 5 weight tensors, the configured network trains 4.*"
                                          r"train\.resume=false"):
        resume_checkpoint(opts, tmp_path / "run", module, None)
