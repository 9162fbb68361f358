"""The stages are library functions: fit and test on a chip store from Python, no config at all."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from deepgeo_runner.lit.datamodule import ChipDataModule
from deepgeo_runner.lit.module import SegmentationModule
from deepgeo_runner.stages import train
from tests.helpers import write_noise_store


def _store(root: Path) -> Path:
    """A chip store as the chips stage writes it: band 0 carries the class, under noise."""
    return write_noise_store(root, {"train": 48, "val": 8, "test": 16}, bands=3, signal=2.5)


def test_fit_and_test_on_a_chip_store_without_a_config(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    module = SegmentationModule(net, partial(torch.optim.AdamW, lr=0.02), None, ["land", "water"])
    trainer = pl.Trainer(max_epochs=4, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path))
    data = ChipDataModule(_store(tmp_path / "chips"), 16, 0, "d4", 0)
    assert train.fit(trainer, module, data) is None  # no checkpoint callback: nothing written
    scores = train.test(trainer, module, data, None)
    assert scores["accuracy"] > 0.85 and scores["per_class"]["water"]["f1"] > 0.8, scores


def test_typed_options_check_their_ranges_for_library_callers_too():
    import pytest

    from deepgeo_runner.config.schema import DataConfig, PredictConfig
    from deepgeo_runner.core.errors import ConfigError

    DataConfig(name="scene", chip_size=32, split_buffer=8)  # fine
    with pytest.raises(ConfigError, match=r"data\.chip_size=4 is not valid: expected at least 8 pixels"):
        DataConfig(chip_size=4)
    with pytest.raises(ConfigError, match=r"data\.split_fractions=\[0\.0, 0\.5, 0\.5\]"):
        DataConfig(split_fractions=[0.0, 0.5, 0.5])
    with pytest.raises(ConfigError, match=r"predict\.overlap=1\.0 is not valid"):
        PredictConfig(overlap=1.0)


@pytest.mark.parametrize("name,names", [
    ("prepare", ["prepare_scene"]), ("labels", ["rasterize_labels"]), ("chips", ["build_chip_store"]),
    ("apply", ["apply_checkpoint"]), ("train", ["fit", "test"]),
])
def test_the_library_paths_of_the_0_1_readme_still_import(name, names):
    """The stages moved to deepgeo_runner.stages; the paths the README of 0.1.0 documented still work, warning."""
    import importlib

    with pytest.warns(DeprecationWarning, match=f"moved to deepgeo_runner.stages.{name}"):
        module = importlib.reload(importlib.import_module(f"deepgeo_runner.pipeline.{name}"))
    stage = importlib.import_module(f"deepgeo_runner.stages.{name}")
    assert all(getattr(module, n) is getattr(stage, n) for n in names)
