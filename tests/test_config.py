"""Smoke tests over the real conf/: every option composes and validates; bad input fails fast."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError
from tests.helpers import CONF, options, scene_overrides

GROUPS = ["data", "preprocessing", "model", "loss", "augmentation", "trainer", "logger", "callbacks", "debug",
          "hparams_search"]  # experiments: test_every_experiment_composes_and_validates


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(group, option, tiny_scene, compose):
    overrides = [f"{group}={option}", "paths.output_dir=/tmp/x"]
    if group == "data" and option == "scene":
        overrides += scene_overrides(tiny_scene)
    if group == "data" and option == "torchgeo":  # the class is only named here, never imported
        overrides += ["data.datamodule._target_=torchgeo.datamodules.LandCoverAIDataModule",
                      "data.classes=[background,building,woodland,water,road]", "data.in_channels=3"]
    cfg = compose(*overrides)
    validate_config(cfg)
    assert OmegaConf.select(cfg, "model._target_")


def test_required_groups_and_options_exist():
    assert {"demo", "scene"} <= set(options("data"))
    assert {"default", "none"} <= set(options("preprocessing"))
    assert {"unet", "fcn8s"} <= set(options("model"))
    assert {"d4", "none"} <= set(options("augmentation"))
    assert {"default", "cpu", "ddp", "ddp_cpu"} <= set(options("trainer"))
    assert {"csv", "tensorboard", "mlflow", "none"} <= set(options("logger"))
    assert {"default"} <= set(options("callbacks"))
    assert {"fast"} <= set(options("debug"))


@pytest.mark.parametrize("override,valid", [
    ("augmentation.name=d8", "none, d4, d4_expand"),
    ("data.background=other", "ignore, class"),
    ("data.nodata_rule=all", "gdal, any_band"),
    ("data.resampling=lanczos", "nearest, bilinear, cubic, average, mode"),
    ("data.other_classes=drop", "background, ignore"),
    ("data.chip_strategy=sliding", "random, grid, points"),
    ("augmentation.expand_ops=[rot45]", "identity, rot90"),
    ("predict.blend=gaussian", "hann, center"),
    ("predict.probabilities=float64", "none, float16, uint8"),
    ("train.monitor_mode=up", "auto, min, max"),
    ("test_split=holdout", "train, val, test"),
])
def test_a_choice_outside_its_enum_fails_at_compose_listing_the_valid_ones(override, valid, compose):
    with pytest.raises(Exception) as info:  # Hydra's composition error, the cause beneath it
        compose(override)
    assert f"expected one of [{valid}" in f"{info.value} {info.value.__cause__}"


def test_unknown_key_and_wrong_type_fail_at_compose(compose):
    with pytest.raises(Exception, match="chipsize"):
        compose("data.chipsize=64")
    with pytest.raises(Exception, match="chip_size"):
        compose("data.chip_size=big")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["data=scene"], r"data.image is required"),
        (["stages=[prepare,train]"], r"stages=.*unknown: \['train'\]"),
        (["preprocessing.normalization=zscore"], r"preprocessing.normalization='zscore'"),
        (["preprocessing.indices=[ndvi,nbr]", "data.band_names=[blue,green,red,nir]"], r"'nbr' needs the band role"),
        (["data.class_colors=[red,green,blue]"], r"data.class_colors"),
        (["stages=[predict]"], r"predict.checkpoint"),
        (["data.split_fractions=[0.5,0.5]"], r"data.split_fractions"),
        (["augmentation.copy_paste_edge=-0.5"], r"augmentation.copy_paste_edge"),
        (["augmentation.copy_paste=2"], r"augmentation.copy_paste"),
        (["augmentation.teacher=maybe"], r"augmentation.teacher"),
        (["augmentation.teacher_confidence=0.3"], r"augmentation.teacher_confidence"),
        (["augmentation.teacher_reach_px=-1"], r"augmentation.teacher_reach_px"),
        (["augmentation.teacher_weight=0"], r"augmentation.teacher_weight"),
    ],
)
def test_validation_names_the_key(overrides, message, compose):
    cfg = compose(*overrides + ["paths.output_dir=/tmp/x"])
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_missing_file_is_reported_before_torch_is_imported(tmp_path):
    """The command fails naming the key, without loading torch or Lightning (the slow part)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "deepgeo_runner.cli", "data=scene",
         "data.image=/no/such/scene.tif", "data.labels=/no/such/gt.gpkg", "data.classes=[a]",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "data.image='/no/such/scene.tif': no such file" in proc.stdout + proc.stderr
    imported = re.findall(r"\|\s+([\w.]+)\s*$", proc.stderr, flags=re.M)
    assert "torch" not in imported and "lightning" not in imported


@pytest.mark.parametrize("experiment", options("experiments"))
def test_every_experiment_composes_and_validates(experiment, monkeypatch, compose):
    monkeypatch.syspath_prepend(str(CONF.parent / "experiments"))  # PYTHONPATH=experiments, as the README says
    cfg = compose(f"experiments={experiment}", "paths.output_dir=/tmp/x")
    image = cfg.data.image
    if image is not None and not Path(image).exists():
        pytest.skip(f"experiment '{experiment}' reads {image}, absent here")
    validate_config(cfg)
