"""Model names and every key, also those added with Hydra's ``+key=``, are checked with the rest of the
config, before data is read or torch is imported, with close matches suggested."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from deepgeo_runner.cli import config_dir
from deepgeo_runner.config import introspect
from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["+data.chipsize=32"], r"data\.chipsize is not a key of data\. Did you mean data\.chip_size"),
        (["+trainer.max_epoch=2"],
         r"trainer\.max_epoch is not a parameter of lightning\.pytorch\.Trainer\. Did you mean trainer\.max_epochs"),
        (["+train.monitr=val_loss"], r"train\.monitr is not a key of train\. Did you mean train\.monitor\b"),
        (["+predict.windw=64"], r"predict\.windw .* Did you mean predict\.window\?"),
        (["+data.split_scenes.test.imag=b.tif"], r"data\.split_scenes\.test\.imag .* Did you mean "
                                                 r"data\.split_scenes\.test\.image\?"),
        (["+sed=3"], r"sed is not a key of the config\. Did you mean seed\?"),
        (["model=smp", "model.encoder=resnet343"],
         r"model\.encoder='resnet343' is not a segmentation-models-pytorch encoder\. Did you mean resnet34"),
        (["model=smp", "model.arch=DeepLabV3Pls"], r"model\.arch='DeepLabV3Pls' .* Did you mean DeepLabV3Plus"),
        (["model=smp", "model.encoder=tu-convnext_tny"], r"timm has no model 'convnext_tny'\. Did you mean "
                                                         r"tu-convnext_tiny"),
        (["model=unet", "+model.decoder_chanels=[32,16,8,4]"],
         r"model\.decoder_chanels is not a parameter of smp Unet .* Did you mean model\.decoder_channels"),
        (["model=fcn8s", "model._target_=deepgeo_runner.ml.models.FCN8"],
         r"model\._target_='deepgeo_runner\.ml\.models\.FCN8' names nothing in deepgeo-runner\. Did you mean "
         r"deepgeo_runner\.ml\.models\.FCN8s"),
        (["model=fcn8s", "+model.widht=16"], r"model\.widht is not a parameter of .*FCN8s\. Did you mean model\.width"),
        (["model._target_=my_nets.Net"], r"no module 'my_nets' is installed or on the path"),
        (["loss=focal", "+loss.gama=1.5"], r"loss\.gama .* Did you mean loss\.gamma\?"),
        (["+optimizer.lrr=0.1"], r"optimizer\.lrr is not a parameter of torch\.optim\.AdamW\. Did you mean "
                                 r"optimizer\.lr\?"),
    ],
)
def test_a_misspelt_name_or_key_fails_naming_it_with_close_matches(overrides, message, compose):
    cfg = compose(*overrides, "paths.output_dir=/tmp/x")
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=smp", "model.arch=deeplabv3plus", "model.encoder=efficientnet-b0"],
        ["model=smp", "model.encoder=tu-convnext_tiny", "+model.drop_path_rate=0.1"],  # timm takes its own keys
        ["model=smp", "model.encoder=tu-resnet50.a1_in1k"],  # a pretrained tag
        ["model=smp", "model.encoder=timm-regnetx_002"],  # smp turns it into tu-regnetx_002
        ["model=smp", "model.arch=FPN", "+model.decoder_dropout=0.1"],
        ["+trainer.gradient_clip_val=1.0", "+trainer.limit_train_batches=2"],
        ["trainer=ddp_cpu"],
    ],
)
def test_valid_names_and_keys_pass(overrides, compose):
    validate_config(compose(*overrides, "paths.output_dir=/tmp/x"))


@pytest.mark.parametrize("group", ["loss", "model", "trainer", "hparams_search"])
def test_every_option_of_the_target_groups_passes(group, compose):
    """Nested targets too (loss=ce_dice holds a list of losses)."""
    for option in sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml")):
        validate_config(compose(f"{group}={option}", "paths.output_dir=/tmp/x"))


def test_names_are_checked_before_data_is_read_or_torch_imported(tmp_path):
    """A valid config validates without torch; a wrong encoder fails in seconds, naming the key."""
    code = ("import sys; from tests.helpers import compose_config; from deepgeo_runner.config.validate "
            "import validate_config; validate_config(compose_config('model=smp', 'model.encoder=resnet50', "
            "'trainer.max_epochs=2', 'paths.output_dir=/tmp/x')); print(sorted(m for m in ('torch', 'lightning', "
            "'segmentation_models_pytorch', 'timm') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "deepgeo_runner.cli", "model=smp", "model.encoder=resnet334",
         f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 2
    assert "model.encoder='resnet334' is not a segmentation-models-pytorch encoder" in proc.stdout + proc.stderr
    imported = re.findall(r"\|\s+([\w.]+)\s*$", proc.stderr, flags=re.M)
    assert "lightning" not in imported  # smp (and torch) only to confirm a name before refusing it
    assert not (tmp_path / "cache").exists()  # no data stage ran


def test_source_readers_agree_with_the_imported_packages():
    """Guards the cheap path: if smp or timm change their layout, this fails (and validation falls
    back to importing them, never refusing a valid name)."""
    import segmentation_models_pytorch as smp

    assert set(introspect.smp_encoders()) == set(introspect.smp_encoders_imported())
    assert list(introspect.smp_architectures()) == [c.__name__ for c in smp.MODEL_ARCHITECTURES_MAPPING.values()]
    assert introspect.timm_models() == introspect.timm_models_imported()
    import inspect

    import lightning.pytorch as pl

    expected = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    assert introspect.trainer_params("lightning.pytorch.Trainer").names == expected
