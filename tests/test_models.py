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

from deepgeo_runner.ml.models import (
    MODELS,
    FCN8s,
    FCN16s,
    FCN32s,
    UNetValid,
    align_target,
    build_model,
    smp_model,
)
from deepgeo_runner.ml.models.fcn import bilinear_upsampler
from deepgeo_runner.ml.models.pretrained import adapted_kernel
from deepgeo_runner.ml.models.unet import valid_output_size

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
    "unet_valid": {"depth": 2, "width": 4, "mirror_pad": True},  # same-size output for the contract
}
NAMES = sorted(MODELS)


@pytest.fixture(autouse=True)
def _few_threads():
    """One thread: on a shared 2-core machine, two threads contending with other processes ran
    a small U-Net step 30x slower (1.4 s vs 0.04 s, measured); alone they gain little here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
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


SINGLE_DATE_CONFIGS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")
                             if "temporal" not in p.stem and "fusion" not in p.stem)


def compose_model(yaml_name: str, **overrides):
    """conf/model/<name>.yaml inside a run config, so ${data...} interpolations resolve."""
    omegaconf = pytest.importorskip("omegaconf")
    node = omegaconf.OmegaConf.load(REPO / "conf" / "model" / f"{yaml_name}.yaml")
    cfg = omegaconf.OmegaConf.create(
        {"data": {"band_names": ["blue", "green", "red", "nir", "swir1", "swir2"]}, "model": node})
    cfg.model.merge_with(overrides)
    return cfg.model


@pytest.mark.parametrize("yaml_name", SINGLE_DATE_CONFIGS)
def test_shipped_model_configs_instantiate(yaml_name):
    """conf/model/*.yaml build through Hydra with in_channels/classes given at run time."""
    hydra_utils = pytest.importorskip("hydra.utils")
    small = {"width": 4} if "width" in compose_model(yaml_name) else {}
    model = hydra_utils.instantiate(compose_model(yaml_name, **small), in_channels=6,
                                    classes=3).eval()
    x = torch.randn(1, 6, 96, 96)
    with torch.no_grad():
        out = model(x)
    top, left, h, w = model.output_crop(96, 96) if hasattr(model, "output_crop") else (0, 0, 96, 96)
    assert out.shape == (1, 3, h, w)
    assert yaml_name != "unet_valid" or h < 96  # the valid U-Net option really is unpadded


def test_smp_option_takes_any_architecture_and_encoder():
    hydra_utils = pytest.importorskip("hydra.utils")
    node = compose_model("smp", arch="DeepLabV3Plus", encoder="resnet18", decoder_channels=16)
    model = hydra_utils.instantiate(node, in_channels=6, classes=3).eval()
    assert type(model.model).__name__ == "DeepLabV3Plus"
    with torch.no_grad():
        assert model(torch.randn(1, 6, 40, 40)).shape == (1, 3, 40, 40)


# --- the original, valid-padding U-Net --------------------------------------------------------

def test_unet_valid_has_the_paper_geometry():
    assert valid_output_size(572, 4) == 388  # Ronneberger et al. 2015, Fig. 1
    assert valid_output_size(571, 4) is None  # an odd side before a pooling
    model = UNetValid(3, 2, depth=4, width=2).eval()
    assert model.min_input == 188
    with torch.no_grad():
        assert model(torch.randn(1, 3, 188, 188)).shape == (1, 2, 4, 4)
    assert model.output_crop(572, 572) == (92, 92, 388, 388)


@pytest.mark.parametrize("size", [(64, 64), (65, 70), (47, 44)])
def test_unet_valid_crop_lines_labels_up_with_logits(size):
    """output_crop says which input pixels the logits cover: a model that copies its input's
    position must see the cropped labels at the same place."""
    model = UNetValid(1, 2, depth=2, width=4).eval()
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        out = model(x)
    labels = torch.arange(size[0] * size[1]).view(1, *size)
    aligned = align_target(out, labels, model)
    top, left, h, w = model.output_crop(*size)
    assert out.shape[-2:] == aligned.shape[-2:] == (h, w)
    assert aligned[0, 0, 0].item() == top * size[1] + left
    model.mirror_pad = True
    with torch.no_grad():
        full = model(x)
    assert full.shape[-2:] == size
    if size == (64, 64):  # a usable size: pooling grids coincide, so the mirrored (full-size)
        # run gives the same logits at those pixels
        assert torch.allclose(full[..., top:top + h, left:left + w], out, atol=1e-5)


def test_unet_valid_trains_on_cropped_labels():
    torch.manual_seed(0)
    x, y = _squares(n=4, size=48)
    model = UNetValid(3, 2, depth=2, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, align_target(logits, y, model))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_unet_valid_too_small_says_what_to_change():
    model = UNetValid(3, 2, depth=3, width=2)
    with pytest.raises(ValueError, match=r"at least 92 px.*got 64.*data\.chip_size.*model\.depth"
                                         r".*mirror_pad"):
        model(torch.randn(1, 3, 64, 64))


def test_align_target_without_output_crop_is_a_clear_error():
    with pytest.raises(ValueError, match=r"smaller than its input must define output_crop"):
        align_target(torch.zeros(1, 2, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long), nn.Identity())
    same = torch.zeros(1, 8, 8, dtype=torch.long)
    assert align_target(torch.zeros(1, 2, 8, 8), same, None) is same


# --- pretrained encoders: first convolution adapted by band name --------------------------------

def test_adapted_kernel_keeps_named_bands_and_rescales():
    rgb = torch.stack([torch.full((2, 3, 3), v) for v in (1.0, 2.0, 3.0)], dim=1)  # red, green, blue
    new = adapted_kernel(rgb, ["blue", "Green", "Red", "nir", None])
    scale = 3 / 5
    assert new.shape == (2, 5, 3, 3)
    assert [new[0, i, 0, 0].item() for i in range(5)] == pytest.approx(
        [3 * scale, 2 * scale, 1 * scale, 2 * scale, 2 * scale])  # nir, unnamed: the mean
    with pytest.raises(ValueError, match="one input channel per pretrained band"):
        adapted_kernel(rgb[:, :2], ["red"])


def _fake_imagenet_resnet18(tmp_path: Path, monkeypatch) -> torch.Tensor:
    """Serve a local resnet18 encoder state as smp's 'imagenet' download; return its conv1."""
    import segmentation_models_pytorch.encoders as smp_encoders
    from safetensors.torch import save_file

    encoder = smp_encoders.get_encoder("resnet18", in_channels=3, weights=None)
    state = {k: v.contiguous() for k, v in encoder.state_dict().items()}
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    (tmp_path / "config.json").write_text("{}")

    def local_file(repo_id, filename, **kwargs):
        return str(tmp_path / filename)

    monkeypatch.setattr(smp_encoders, "hf_hub_download", local_file)
    return state["conv1.weight"]


def test_pretrained_first_conv_adapted_by_band_names(tmp_path, monkeypatch):
    """No download: the 'pretrained' file is made here and served in place of the hub's."""
    conv1 = _fake_imagenet_resnet18(tmp_path, monkeypatch)
    bands = ["blue", "green", "red", "nir", "swir1", "swir2"]
    model = smp_model(8, 2, encoder="resnet18", encoder_weights="imagenet", band_names=bands,
                      encoder_depth=4, decoder_channels=[16, 8, 8, 4])  # + 2 appended indices
    weight = first_conv(model).weight
    assert weight.shape[1] == 8
    scale = 3 / 8
    assert torch.allclose(weight[:, 0], conv1[:, 2] * scale)  # blue <- ImageNet blue
    assert torch.allclose(weight[:, 2], conv1[:, 0] * scale)  # red <- ImageNet red
    assert torch.allclose(weight[:, 3], conv1.mean(dim=1) * scale)  # nir: mean kernel
    assert torch.allclose(weight[:, 7], conv1.mean(dim=1) * scale)  # an index: mean kernel
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 8, 32, 32)).shape == (1, 2, 32, 32)
    # without band names smp repeats R, G, B over the bands instead (band 3 = nir gets red)
    plain = smp_model(8, 2, encoder="resnet18", encoder_weights="imagenet", encoder_depth=4,
                      decoder_channels=[16, 8, 8, 4])
    assert torch.allclose(first_conv(plain).weight[:, 3], conv1[:, 0] * scale)


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


def test_custom_network_experiment_builds_the_users_class(monkeypatch):
    """experiments/custom_network.yaml names tiny_net.TinyNet by _target_ alone."""
    hydra = pytest.importorskip("hydra")
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from deepgeo_runner.config.schema import register_configs

    GlobalHydra.instance().clear()
    register_configs()
    with hydra.initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra.compose("config", overrides=["experiments=custom_network"])
    GlobalHydra.instance().clear()
    assert dict(cfg.model) == {"_target_": "tiny_net.TinyNet", "width": 16}  # no built-in keys left
    monkeypatch.syspath_prepend(str(REPO / "experiments"))  # what PYTHONPATH=experiments does
    model = instantiate(cfg.model, in_channels=6, classes=3)
    assert type(model).__name__ == "TinyNet"
    x, y = torch.randn(2, 6, 24, 24), torch.randint(0, 3, (2, 24, 24))
    out = model(x)
    assert out.shape == (2, 3, 24, 24)
    F.cross_entropy(out, y).backward()
    assert torch.isfinite(first_conv(model).weight.grad).all()


# --- torchgeo's multispectral weights (model.torchgeo_weights), served without a download -------

S2_WEIGHTS = "ResNet18_Weights.SENTINEL2_ALL_MOCO"


def _serve_torchgeo_state(monkeypatch, state: dict | None = None, error: Exception | None = None) -> list[str]:
    """Answer torch hub's load_state_dict_from_url (as torchvision's weights call it) with
    ``state`` or ``error``; return the URLs asked for."""
    import torchvision.models._api as weights_api

    asked: list[str] = []

    def load_state_dict_from_url(url, *args, **kwargs):
        asked.append(url)
        if error is not None:
            raise error
        return {k: v.clone() for k, v in state.items()}

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", load_state_dict_from_url)
    return asked


def _synthetic_s2_resnet18() -> dict[str, torch.Tensor]:
    """A state dict shaped like torchgeo's 13-band ResNet-18 (timm names, with the classifier)."""
    import segmentation_models_pytorch.encoders as smp_encoders

    torch.manual_seed(1)
    encoder = smp_encoders.get_encoder("resnet18", in_channels=13, weights=None)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    return {**state, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}


def test_torchgeo_weights_load_into_the_encoder_as_they_are(monkeypatch):
    state = _synthetic_s2_resnet18()
    asked = _serve_torchgeo_state(monkeypatch, state)
    model = smp_model(13, 2, encoder="resnet18", torchgeo_weights=S2_WEIGHTS, encoder_depth=4,
                      decoder_channels=[16, 8, 8, 4])
    assert len(asked) == 1 and asked[0].endswith("resnet18_sentinel2_all_moco-59bfdff9.pth")
    loaded = model.model.encoder.state_dict()
    unused = {k for k in state if k.startswith("layer4.")}  # encoder_depth=4 never calls layer4: removed
    assert unused and set(loaded) == set(state) - {"fc.weight", "fc.bias"} - unused
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 13, 32, 32)).shape == (1, 2, 32, 32)


def test_torchgeo_weights_first_conv_adapted_to_the_bands_by_role(monkeypatch):
    """Sentinel-2 B2, B3, B4, B8 are blue, green, red, nir: those kernels are kept, the rest loaded."""
    state = _synthetic_s2_resnet18()
    _serve_torchgeo_state(monkeypatch, state)
    bands = ["blue", "green", "red", "nir", "swir2"]
    model = smp_model(7, 2, encoder="resnet18", torchgeo_weights=S2_WEIGHTS, band_names=bands,
                      encoder_depth=4, decoder_channels=[16, 8, 8, 4])  # + 2 appended indices
    conv1, weight = state["conv1.weight"], first_conv(model).weight
    scale = 13 / 7
    assert weight.shape == (64, 7, 7, 7)
    for i, s2_index in enumerate([1, 2, 3, 7, 12]):  # B2 B3 B4 B8 B12
        assert torch.allclose(weight[:, i], conv1[:, s2_index] * scale), bands[i]
    assert torch.allclose(weight[:, 6], conv1.mean(dim=1) * scale)  # an index: the mean kernel
    assert torch.equal(model.model.encoder.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 7, 32, 32)).shape == (1, 2, 32, 32)


def test_torchgeo_weights_offline_say_where_to_put_the_file(monkeypatch):
    from urllib.error import URLError

    cause = URLError("simulated: no network")
    _serve_torchgeo_state(monkeypatch, error=cause)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent/torch_home")
    with pytest.raises(RuntimeError, match=r"Could not download the torchgeo weights .*SENTINEL2_ALL_MOCO.*"
                       r"https://hf\.co/torchgeo/resnet18_sentinel2_all_moco/.*"
                       r"/nonexistent/torch_home/hub/checkpoints/resnet18_sentinel2_all_moco-59bfdff9\.pth.*"
                       r"TORCH_HOME.*model\.torchgeo_weights=null") as info:
        smp_model(13, 2, encoder="resnet18", torchgeo_weights=S2_WEIGHTS)
    assert info.value.__cause__ is cause


@pytest.mark.parametrize("kwargs, message", [
    ({"encoder": "resnet34"}, r"for the 'resnet18' encoder, not 'resnet34'.*model\.encoder=resnet18"),
    ({"torchgeo_weights": "ResNet18_Weights.NOPE"}, r"not a torchgeo weights name.*SENTINEL2_ALL_MOCO"),
    ({"encoder_weights": "imagenet"}, r"encoder_weights .* or torchgeo_weights, not both"),
    ({"in_channels": 4}, r"take 13 bands.*the input has 4.*band_names"),
    ({"in_channels": 2, "band_names": ["vv", "vh"]}, r"none of the bands \['vv', 'vh'\].*model\.pretrained_bands"),
])
def test_torchgeo_weights_misconfigured_say_what_to_change(monkeypatch, kwargs, message):
    asked = _serve_torchgeo_state(monkeypatch, error=AssertionError("nothing may be fetched"))
    args = {"in_channels": 13, "classes": 2, "encoder": "resnet18", "torchgeo_weights": S2_WEIGHTS, **kwargs}
    with pytest.raises(ValueError, match=message):
        smp_model(**args)
    assert asked == []


def test_smp_config_takes_torchgeo_weights_and_the_data_band_names(monkeypatch):
    hydra_utils = pytest.importorskip("hydra.utils")
    state = _synthetic_s2_resnet18()
    _serve_torchgeo_state(monkeypatch, state)
    node = compose_model("smp", encoder="resnet18", torchgeo_weights=S2_WEIGHTS, decoder_channels=[16, 8, 8, 4, 4])
    model = hydra_utils.instantiate(node, in_channels=8, classes=3)  # 6 named bands + 2 indices
    weight = first_conv(model).weight
    assert weight.shape[1] == 8
    assert torch.allclose(weight[:, 4], state["conv1.weight"][:, 11] * 13 / 8)  # swir1 <- B11


def test_a_checkpoint_rebuilds_its_pretrained_network_without_fetching(monkeypatch):
    """Its own weights replace the pretrained ones, so predicting offline from it needs no download."""
    from deepgeo_runner.stages.apply import build_net

    _serve_torchgeo_state(monkeypatch, _synthetic_s2_resnet18())
    bands = ["blue", "green", "red", "nir"]
    trained = smp_model(4, 2, encoder="resnet18", torchgeo_weights=S2_WEIGHTS, band_names=bands,
                        encoder_depth=4, decoder_channels=[16, 8, 8, 4])
    asked = _serve_torchgeo_state(monkeypatch, error=AssertionError("nothing may be fetched"))
    meta = {"features": bands, "class_names": ["a", "b"],
            "model": {"_target_": "deepgeo_runner.ml.models.smp_model", "encoder": "resnet18",
                      "torchgeo_weights": S2_WEIGHTS, "band_names": bands, "encoder_depth": 4,
                      "decoder_channels": [16, 8, 8, 4]}}
    rebuilt = build_net(meta, trained.state_dict())
    assert asked == []
    assert torch.equal(first_conv(rebuilt).weight, first_conv(trained).weight)
