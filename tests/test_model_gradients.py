"""Every parameter of every shipped model receives a gradient (conf/model/*.yaml).

DDP refuses a network holding parameters its forward never uses ("parameters that were not
used in producing the loss"); such a network cannot run under ``trainer=ddp``/``ddp_cpu``.
Each option is built the way the runner builds it (composed config, run-time inputs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deepgeo_runner.cli import config_dir

CONF = Path(config_dir())
MODEL_OPTIONS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
# kept tiny so that each option builds and steps in well under a second on one CPU core;
# the shipped depth/encoder choices stay (they decide which parameters are used)
SMALL = {"width": 4}


@pytest.fixture(autouse=True)
def _seeded(one_thread):
    torch.manual_seed(0)


def _build(option: str):
    """The network of ``model=option`` as :func:`deepgeo_runner.pipeline.learning.build_module` makes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.config.schema import register_configs
    from deepgeo_runner.pipeline.instantiators import instantiate
    from deepgeo_runner.pipeline.stage_options import model_inputs

    GlobalHydra.instance().clear()
    register_configs()
    overrides = [f"model={option}", "paths.output_dir=/tmp/x", "data.dates=[2019-08-01,2020-08-01]"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    for key, value in SMALL.items():
        if key in cfg.model:
            cfg.model[key] = value
    bands = 2 * 4  # two dates of four bands (a single-date network takes them as eight bands)
    opts = run_options(cfg)
    inputs = model_inputs(opts, bands)
    return instantiate(opts.model, "model", **inputs, classes=3), bands


@pytest.mark.parametrize("option", MODEL_OPTIONS)
def test_every_parameter_of_every_model_option_gets_a_gradient(option):
    net, bands = _build(option)
    net.train()
    size = 96  # the valid-padding U-Net (depth 3) needs at least 92 px
    logits = net(torch.randn(2, bands, size, size))
    target = torch.randint(0, 3, (2, *logits.shape[-2:]))
    F.cross_entropy(logits, target).backward()
    unused = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"model={option}: parameters without a gradient (DDP refuses them): {unused[:8]}"
    assert sum(p.numel() for p in net.parameters()) > 0


def test_unused_encoder_stages_are_removed_and_older_checkpoints_still_load():
    """The default U-Net (resnet18, depth 4) never calls the encoder's layer4: it is removed, and
    a state dict saved with it (a checkpoint of an earlier version) loads without it."""
    from deepgeo_runner.ml.models import build_model

    net = build_model("unet", 4, 3)
    assert net.pruned == ["encoder.layer4"]
    assert not any(k.startswith("model.encoder.layer4.") for k in net.state_dict())
    older = {**net.state_dict(), "model.encoder.layer4.0.conv1.weight": torch.zeros(512, 256, 3, 3)}
    build_model("unet", 4, 3).load_state_dict(older)  # strict: only the pruned stage's keys are skipped
    with pytest.raises(RuntimeError, match="removed as unused"):
        net.model.encoder.layer4(torch.zeros(1))
    full_depth = build_model("unet", 4, 3, encoder_depth=5, decoder_channels=[16, 8, 8, 4, 4])
    assert full_depth.pruned == []  # every stage used at full depth
