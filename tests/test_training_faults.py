"""Faults around training, end to end through the `deepgeo` command (subprocesses, tiny demo).

A run killed by SIGTERM, moved to another folder and relaunched ends with the same metrics
and training curves as an uninterrupted run; SIGINT stops cleanly too; a diverging run, a
crafted checkpoint and a run directory of another network each end with one message and a
non-zero exit, never a traceback; DDP runs the default U-Net.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepgeo_runner.ml.model_card import checkpoint_meta
from tests.helpers import TINY, deepgeo_command, write_image
from tests.helpers import deepgeo as run_deepgeo_in
from tests.helpers.models import crafted_checkpoint

pytestmark = pytest.mark.slow

BASE = [o for o in TINY if not o.startswith("trainer.max_epochs")] + [
    "trainer=cpu", "stages=[prepare,rasterize,chips,fit,test]"]


def deepgeo(run_dir: Path, cache_dir: Path, *overrides: str, rc: int = 0, base: list[str] = BASE) -> str:
    proc = run_deepgeo_in(run_dir, cache_dir, *overrides, base=base, rc=rc, timeout=900)
    return proc.stdout + proc.stderr


def interrupt_after_first_checkpoint(run_dir: Path, cache_dir: Path, signum: int, *overrides: str) -> str:
    """Launch a run, send ``signum`` once ``last.ckpt`` exists (the first epoch ended); its output."""
    proc = subprocess.Popen(deepgeo_command(run_dir, cache_dir, *overrides, base=BASE), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signum, f"exit {proc.returncode}:\n{out[-5000:]}"
    assert f"stopped by {signal.Signals(signum).name}" in out and "Traceback" not in out, out[-5000:]
    return out


def provenance(run_dir: Path) -> dict:
    return json.loads((run_dir / "provenance.json").read_text())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_a_killed_moved_and_relaunched_run_equals_an_uninterrupted_one(cache_dir, tmp_path):
    whole = tmp_path / "whole"
    deepgeo(whole, cache_dir, "trainer.max_epochs=4")
    assert provenance(whole)["status"] == "completed"

    killed = tmp_path / "killed"
    interrupt_after_first_checkpoint(killed, cache_dir, signal.SIGTERM, "trainer.max_epochs=4")
    assert provenance(killed)["status"] == "interrupted"
    assert not (killed / "metrics.json").exists()
    state = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["epoch"] < 3  # stopped before the end

    moved = tmp_path / "moved"  # best-checkpoint tracking must follow the folder
    shutil.move(killed, moved)
    out = deepgeo(moved, cache_dir, "trainer.max_epochs=4")
    assert "resuming from" in out
    assert provenance(moved)["status"] == "completed"
    assert (moved / "metrics.json").read_text() == (whole / "metrics.json").read_text()
    # the curves of the first part kept, the epoch cut short by the kill not counted twice
    assert (moved / "logs" / "metrics.csv").read_text() == (whole / "logs" / "metrics.csv").read_text()
    assert (moved / "logs" / "history.csv").read_text() == (whole / "logs" / "history.csv").read_text()


def test_sigint_stops_cleanly_and_the_run_resumes(cache_dir, tmp_path):
    run = tmp_path / "run"
    interrupt_after_first_checkpoint(run, cache_dir, signal.SIGINT, "trainer.max_epochs=3")
    assert provenance(run)["status"] == "interrupted"
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] < 2
    assert not list((run / "checkpoints").glob(".*"))  # no temporary checkpoint left behind
    out = deepgeo(run, cache_dir, "trainer.max_epochs=3", "stages=[prepare,rasterize,chips,fit]")
    assert "resuming from" in out
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 2


def test_a_diverging_run_stops_at_once_with_a_message(cache_dir, tmp_path):
    run = tmp_path / "nan"
    out = deepgeo(run, cache_dir, "trainer.max_epochs=3", "optimizer.lr=1e6", rc=2)
    assert "training diverged at epoch" in out and ", step " in out
    assert "train chips [" in out and "chips.json" in out and "optimizer.lr is 1e+06" in out
    assert not (run / "metrics.json").exists()  # no test scores of a broken model
    record = provenance(run)
    assert record["status"] == "failed" and "training diverged" in record["error"]


def test_a_crafted_checkpoint_creates_nothing_and_is_refused(cache_dir, tmp_path):

    target = tmp_path / "created_by_the_checkpoint"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", target)
    image = write_image(tmp_path / "scene.tif", np.ones((6, 32, 32), np.float32))
    out = deepgeo(tmp_path / "apply", cache_dir, "stages=[predict]", f"predict.checkpoint={evil}",
                  f"predict.image={image}", rc=2, base=[])
    assert f"checkpoint '{evil}' was refused" in out and "nothing in it was run" in out
    out = deepgeo(tmp_path / "score", cache_dir, "stages=[prepare,rasterize,chips,test]",
                  f"predict.checkpoint={evil}", rc=2)  # the weights Lightning's test would load
    assert f"'{evil}' was refused" in out
    assert not target.exists()


def test_a_run_directory_of_another_network_says_what_to_change(cache_dir, tmp_path):
    run = tmp_path / "run"
    deepgeo(run, cache_dir, "trainer.max_epochs=1", "stages=[prepare,rasterize,chips,fit]")
    out = deepgeo(run, cache_dir, "trainer.max_epochs=1", "model=fcn16s", "model.width=8", rc=2)
    assert "was written by another network, FCN8s(width=8)" in out and "FCN16s(width=8" in out
    assert "train.resume=false" in out and "hydra.run.dir" in out
    deepgeo(run, cache_dir, "trainer.max_epochs=1", "model=fcn16s", "model.width=8", "train.resume=false")
    assert checkpoint_meta(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu",
                                      weights_only=True)["deepgeo"])["model"]["_target_"].endswith("FCN16s")


def test_ddp_cpu_trains_the_default_unet(cache_dir, tmp_path):
    """The default model held parameters its forward never used: DDP refused to train it."""
    base = [o for o in BASE if not o.startswith(("model", "trainer="))]
    run = tmp_path / "ddp"
    out = deepgeo(run, cache_dir, "trainer=ddp_cpu", "trainer.max_epochs=1", "data.train_chips=64", base=base)
    assert "not used in producing the loss" not in out
    assert json.loads((run / "metrics.json").read_text())["pixels"] > 0
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    meta = checkpoint_meta(state["deepgeo"])
    assert meta["model"]["arch"] == "Unet" and meta["model"]["encoder_depth"] == 4  # conf/model/unet.yaml as is
