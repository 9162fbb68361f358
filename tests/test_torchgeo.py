"""data=torchgeo: any torchgeo datamodule by ``_target_``, trained and tested by our module.

Nothing is downloaded: ``tests/helpers/tiny_torchgeo.py`` defines a real
``torchgeo.datamodules.NonGeoDataModule`` subclass over tiny local files, imported by
``_target_`` with that folder on PYTHONPATH, as a user's own module would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.lit.torchgeo import segmentation_batch
from deepgeo_runner.ml.model_card import checkpoint_meta

HELPERS = Path(__file__).resolve().parent / "helpers"
TARGET = "tiny_torchgeo.SquaresDataModule"
BASE = [f"data.datamodule._target_={TARGET}", "data.classes=[background,roof,water]", "data.in_channels=3"]


# --- batches: torchgeo's shapes and label conventions into ours --------------------------------

def test_masks_of_any_torchgeo_layout_become_int64_bhw():
    image = torch.rand(2, 3, 8, 8)
    mask = torch.randint(0, 3, (2, 1, 8, 8)).float()  # (B, 1, H, W), float after kornia
    out = segmentation_batch({"image": image, "mask": mask, "bounds": [1, 2]}, num_classes=3, in_channels=3)
    assert set(out) == {"image", "mask"}
    assert out["mask"].dtype == torch.int64 and out["mask"].shape == (2, 8, 8)
    assert torch.equal(out["mask"], mask[:, 0].long())


def test_the_datasets_no_label_value_is_skipped_as_255():
    mask = torch.tensor([[[0, 1], [2, 3]]])
    out = segmentation_batch({"image": torch.rand(1, 4, 2, 2), "mask": mask}, num_classes=3, ignore_value=3)
    assert out["mask"].tolist() == [[[0, 1], [2, 255]]]


def test_batches_that_do_not_fit_the_config_say_what_to_set():
    image, mask = torch.rand(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 7]]])
    with pytest.raises(ValueError, match=r"value 7.*3 classes.*data\.ignore_index=7"):
        segmentation_batch({"image": image, "mask": mask}, num_classes=3)
    with pytest.raises(ValueError, match=r"3 bands.*built for 4.*data\.in_channels=3"):
        segmentation_batch({"image": image, "mask": mask.clamp(max=2)}, num_classes=3, in_channels=4)
    with pytest.raises(ValueError, match=r"'image' and 'mask'.*\['image', 'label'\]"):
        segmentation_batch({"image": image, "label": torch.tensor([1])}, num_classes=3)


# --- config: checked before torch/Lightning are needed ------------------------------------------

def test_torchgeo_option_validates_and_runs_fit_and_test_of_the_default_cycle(compose):
    cfg = compose("data=torchgeo", "paths.output_dir=/tmp/x", *BASE)
    validate_config(cfg)  # the default (whole) cycle is accepted: fit and test are what apply
    assert cfg.data.datamodule.batch_size == cfg.data.batch_size


def test_missing_target_names_the_key_and_an_example(compose):
    with pytest.raises(ConfigError, match=r"data\.datamodule\._target_ is required.*LandCoverAIDataModule"):
        validate_config(compose("data=torchgeo", "paths.output_dir=/tmp/x", *BASE[1:]))


@pytest.mark.parametrize("stages", ["[fit,test,predict]", "[prepare,fit]", "[report]"])
def test_stages_that_do_not_apply_say_what_to_run(stages, compose):
    with pytest.raises(ConfigError, match=r"do not apply to data=torchgeo.*stages=\[fit,test\].*data=scene"):
        validate_config(compose("data=torchgeo", "paths.output_dir=/tmp/x", *BASE, f"stages={stages}"))


@pytest.mark.parametrize("override, key", [
    ("augmentation=d4_expand", "augmentation"),
    ("loss.class_weights=mean_proportion", r"loss\.class_weights"),
    ("test_split=val", "test_split"),
    ("data.in_channels=0", r"data\.in_channels"),
    ("data.datamodule._target_=no_such_package.DataModule", r"no module 'no_such_package'"),
])
def test_options_that_cannot_work_with_a_datamodule_fail_early(override, key, compose):
    with pytest.raises(ConfigError, match=key):
        validate_config(compose("data=torchgeo", "paths.output_dir=/tmp/x", *BASE, override))


def test_a_new_scene_to_classify_is_refused_with_what_to_do_instead(tmp_path, compose):
    image = tmp_path / "new.tif"
    image.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"predict\.image is set but data=torchgeo.*data=scene"):
        validate_config(compose("data=torchgeo", "paths.output_dir=/tmp/x", *BASE, f"predict.image={image}"))


# --- end to end: the command line trains on the torchgeo datamodule -----------------------------

@pytest.mark.slow
def test_cli_trains_and_tests_on_a_torchgeo_datamodule(tmp_path):
    from tiny_torchgeo import write_squares  # helpers/ is on sys.path: _helpers_importable

    root = write_squares(tmp_path / "squares")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "deepgeo_runner.cli", "data=torchgeo", *BASE, f"data.datamodule.root={root}",
           "data.batch_size=8", "model=unet", "trainer=cpu", "trainer.max_epochs=3",
           "trainer.enable_progress_bar=false", "augmentation=d4", "seed=0",
           f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"deepgeo failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"background", "roof", "water"}
    assert metrics["pixels"] == 16 * 32 * 32  # the datamodule's whole test split, once
    # three classes (chance F1 about 1/3); colours make them learnable in 3 short epochs (got 0.95/0.93)
    assert metrics["accuracy"] > 0.9 and metrics["f1_macro"] > 0.8, metrics
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    meta = checkpoint_meta(checkpoint["deepgeo"])  # read through the model card
    assert meta["datamodule"] == TARGET
    assert meta["class_ids"] == [0, 1, 2]
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["checkpoint"] and not provenance["inputs"]
    assert provenance["stages"] == ["fit", "test"]  # of the default whole cycle, what applies


@pytest.fixture(autouse=True)
def _helpers_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HELPERS))


def test_a_geo_datamodule_under_several_processes_is_refused_before_setup():
    from types import SimpleNamespace

    from torchgeo.datamodules import GeoDataModule
    from torchgeo.datasets import RasterDataset

    from deepgeo_runner.lit.torchgeo import TorchGeoAdapter

    adapter = TorchGeoAdapter(GeoDataModule(RasterDataset, batch_size=2, patch_size=16), num_classes=2)
    adapter.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ConfigError, match=r"GeoDataModule.*one device"):
        adapter.setup("fit")
