"""Model contract: any band count, class count and chip size in, raw logits of the same size out.

Every entry of MODELS is checked with tiny settings so the whole file runs in seconds on a CPU.
Pretrained weights are never downloaded: the offline case is simulated by patching smp's fetch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepgeo_runner.ml.models import MODELS, FCN8s, FCN16s, FCN32s, build_model, smp_model
from deepgeo_runner.ml.models.fcn import bilinear_upsampler

REPO = Path(__file__).resolve().parents[1]

# Small settings per table entry (kwargs override the table's defaults); unknown entries run as-is.
TINY: dict[str, dict] = {
    "fcn8s": {"width": 4},
    "fcn16s": {"width": 4},
    "fcn32s": {"width": 4},
    "unet": {"decoder_channels": [16, 8, 8, 4]},
    "unetplusplus": {"encoder_depth": 4, "decoder_channels": [16, 8, 8, 4]},
    "linknet": {"encoder_depth": 4},
    "fpn": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
    "deeplabv3plus": {"decoder_channels": 16},
}
NAMES = sorted(MODELS)


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep timings stable on shared CPUs and match the 2-core budget."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def tiny(name: str, in_channels: int, classes: int, **extra) -> nn.Module:
    return build_model(name, in_channels, classes, **{**TINY.get(name, {}), **extra})


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bands, classes, size", [(3, 2, (48, 48)), (8, 4, (64, 64)),
                                                  (13, 2, (70, 70)), (8, 2, (37, 70))])
def test_forward_shape_any_bands_classes_and_size(name, bands, classes, size):
    model = tiny(name, bands, classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, bands, *size))
    assert out.shape == (2, classes, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_first_conv(name):
    model = tiny(name, 5, 3).train()
    x, y = torch.randn(2, 5, 48, 40), torch.randint(0, 3, (2, 48, 40))
    F.cross_entropy(model(x), y).backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_wrong_band_count_says_what_to_fix(name):
    model = tiny(name, 8, 2)
    with pytest.raises(ValueError, match=r"expected input of shape \(B, C, H, W\) with C=8.*"
                                         r"got shape \(1, 3, 32, 32\).*band_names"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"C=8.*got shape \(8, 32, 32\).*unsqueeze"):
        model(torch.randn(8, 32, 32))


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_logits_not_probabilities(name):
    model = tiny(name, 4, 4).eval()
    assert not any(isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Sigmoid, nn.Softmax2d))
                   for m in model.modules())
    with torch.no_grad():
        out = model(torch.randn(2, 4, 32, 32))
    assert not torch.allclose(out.sum(dim=1), torch.ones_like(out[:, 0]), atol=1e-3)


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_learnable_upsampling_starts_bilinear(factor):
    layer = bilinear_upsampler(3, factor)
    assert layer.weight.requires_grad
    const = torch.full((1, 3, 5, 5), 2.5)
    out = layer(const)
    assert out.shape == (1, 3, 5 * factor, 5 * factor)
    inner = out[..., factor:-factor, factor:-factor]
    assert torch.allclose(inner, torch.full_like(inner, 2.5), atol=1e-5)
    # Same as plain bilinear interpolation away from the border; classes are not mixed.
    x = torch.randn(1, 3, 6, 6)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert torch.allclose(layer(x)[..., factor:-factor, factor:-factor],
                          ref[..., factor:-factor, factor:-factor], atol=1e-5)


def test_fcn8s_fuses_three_scales_with_bilinear_upsamplers():
    model = FCN8s(3, 4, width=4)
    ups = [model.up2_fr, model.up2_pool4, model.up8]
    assert [u.stride for u in ups] == [(2, 2), (2, 2), (8, 8)]
    assert all(isinstance(u, nn.ConvTranspose2d) and u.weight.requires_grad for u in ups)
    assert {m.__class__ for m in (model.score_fr, model.score_pool4, model.score_pool3)} == {nn.Conv2d}
    pool3, pool4, fc7 = model.encoder(torch.randn(1, 3, 64, 64))
    assert pool3.shape[-1] == 8 and pool4.shape[-1] == 4 and fc7.shape[-1] == 2


@pytest.mark.parametrize("cls", [FCN8s, FCN16s, FCN32s])
@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_fcn_handles_tiny_and_odd_inputs(cls, pad_mode):
    model = cls(2, 3, width=2, pad_mode=pad_mode).eval()
    for size in [(8, 8), (33, 17), (1, 1)]:
        with torch.no_grad():
            assert model(torch.randn(1, 2, *size)).shape == (1, 3, *size)


def test_fcn8s_width_scales_channels():
    model = FCN8s(13, 2, width=16)
    assert model.encoder.out_channels == (64, 128, 256)
    assert first_conv(model).in_channels == 13 and first_conv(model).out_channels == 16


def test_unknown_model_name_lists_options():
    with pytest.raises(ValueError, match=r"Unknown model 'segnet'.*fcn8s.*unet"):
        build_model("segnet", 3, 2)


def test_unknown_smp_arch_lists_options():
    with pytest.raises(ValueError, match=r"Unknown smp architecture 'UNetz'.*Unet.*FPN.*DeepLabV3Plus"):
        smp_model(3, 2, arch="UNetz")


def test_unknown_encoder_or_weights_name_is_a_value_error():
    with pytest.raises(ValueError, match=r"Wrong encoder name `resnet7`"):
        smp_model(3, 2, encoder="resnet7")
    with pytest.raises(ValueError, match=r"Wrong pretrained weights `bogus`.*imagenet"):
        smp_model(3, 2, encoder="resnet18", encoder_weights="bogus")


def test_offline_pretrained_weights_say_how_to_train_from_scratch(monkeypatch):
    import segmentation_models_pytorch.encoders as smp_encoders

    cause = OSError("simulated: no network")

    def no_network(*args, **kwargs):
        raise cause

    monkeypatch.setattr(smp_encoders, "hf_hub_download", no_network)
    with pytest.raises(RuntimeError, match=r"download.*failed.*internet.*cache.*"
                                           r"model\.encoder_weights=null") as info:
        smp_model(3, 2, encoder="resnet18", encoder_weights="imagenet")
    assert info.value.__cause__ is cause


def test_smp_accepts_hydra_style_containers():
    """Hydra passes ListConfig; the model must build and run from it."""
    omegaconf = pytest.importorskip("omegaconf")
    channels = omegaconf.OmegaConf.create({"d": [16, 8, 8, 4]}).d
    model = smp_model(3, 2, encoder_depth=4, decoder_channels=channels).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 2, 40, 40)


@pytest.mark.parametrize("yaml_name", ["fcn8s", "unet"])
def test_shipped_model_configs_instantiate(yaml_name):
    """conf/model/*.yaml build through Hydra with in_channels/classes given at run time."""
    hydra_utils = pytest.importorskip("hydra.utils")
    omegaconf = pytest.importorskip("omegaconf")
    path = REPO / "conf" / "model" / f"{yaml_name}.yaml"
    if not path.exists():
        pytest.skip(f"{path} not present")
    model = hydra_utils.instantiate(omegaconf.OmegaConf.load(path), in_channels=6, classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 6, 48, 48)).shape == (1, 3, 48, 48)


def _squares(n: int = 8, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 3-band images with one brighter square each; label 1 inside the square."""
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        side = int(torch.randint(12, 21, (1,), generator=g))
        r, c = torch.randint(0, size - side, (2,), generator=g).tolist()
        y[i, r:r + side, c:c + side] = 1
    x = torch.randn(n, 3, size, size, generator=g) * 0.5 + y[:, None].float()
    return x, y


def test_fcn8s_overfits_toy_segmentation():
    torch.manual_seed(0)
    x, y = _squares()
    model = FCN8s(3, 2, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    accuracy = (pred == y).float().mean().item()
    square_iou = ((pred == 1) & (y == 1)).sum().item() / ((pred == 1) | (y == 1)).sum().item()
    assert accuracy >= 0.9, accuracy
    assert square_iou >= 0.7, square_iou  # not just predicting background everywhere
