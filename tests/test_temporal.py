"""Multi-temporal networks: shapes, gradients, and a change task that one date cannot solve.

The change task: each 4×4 block of a scene is vegetated or bare on each of two dates, the four
histories equally likely. The class of interest is "cleared" (vegetated on date 1, bare on
date 2). Each date alone shows half of the blocks bare and half vegetated, so a model that sees
one date can do no better than F1 = 2/3 on "cleared"; models that see both dates can be exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deepgeo_runner.ml.models import (
    TEMPORAL_MODELS,
    EarlyFusionUNet,
    LateFusionUNet,
    TemporalAttentionUNet,
    build_model,
)
from deepgeo_runner.ml.models.temporal import FUSIONS

REPO = Path(__file__).resolve().parents[1]
TINY = {"depth": 2, "width": 4}


@pytest.fixture(autouse=True)
def _seeded(one_thread):
    torch.manual_seed(0)


def variants() -> list[tuple[str, dict]]:
    out = [("early_fusion", {}), ("early_fusion", {"reduce_channels": 3}),
           ("temporal_attention", {"heads": 2})]
    out += [("late_fusion", {"fusion": f, "shared_encoder": s}) for f in FUSIONS for s in (True, False)]
    return out


VARIANTS = variants()
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in VARIANTS]


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=IDS)
@pytest.mark.parametrize(("dates", "bands", "classes", "size"),
                         [(2, 3, 2, (32, 32)), (3, 5, 4, (37, 21)), (5, 1, 3, (8, 8))])
def test_forward_shape_for_any_dates_bands_and_size(name, kwargs, dates, bands, classes, size):
    model = build_model(name, bands, classes, dates=dates, **TINY, **kwargs).eval()
    x = torch.randn(2, dates, bands, *size)
    with torch.no_grad():
        out = model(x)
        flat = model(x.flatten(1, 2))  # dates stacked date-major as bands: the same input
    assert out.shape == (2, classes, *size)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, flat)
    assert model.temporal and model.dates == dates and model.in_channels == bands


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=IDS)
def test_backward_reaches_every_date_encoder(name, kwargs):
    model = build_model(name, 2, 3, dates=3, **TINY, **kwargs).train()
    x = torch.randn(2, 3, 2, 16, 16, requires_grad=True)
    F.cross_entropy(model(x), torch.randint(0, 3, (2, 16, 16))).backward()
    assert torch.isfinite(x.grad).all()
    for t in range(3):  # every date influences the loss
        assert x.grad[:, t].abs().sum() > 0
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.grad is not None and torch.isfinite(c.weight.grad).all() for c in convs)


def test_separate_encoders_have_their_own_weights():
    shared = LateFusionUNet(4, 2, dates=3, shared_encoder=True, **TINY)
    separate = LateFusionUNet(4, 2, dates=3, shared_encoder=False, **TINY)
    assert len(shared.encoders) == 1 and len(separate.encoders) == 3
    count = lambda m: sum(p.numel() for p in m.encoders.parameters())  # noqa: E731
    assert count(separate) == 3 * count(shared)


def test_difference_fusion_is_blind_to_dates_that_did_not_change():
    model = LateFusionUNet(2, 2, dates=2, fusion="difference", **TINY).eval()
    same, other = torch.randn(1, 1, 2, 16, 16).repeat(1, 2, 1, 1, 1), torch.randn(1, 1, 2, 16, 16)
    with torch.no_grad():
        constant = model(same)
        shifted = model(torch.cat([other, other], dim=1))
    assert torch.allclose(constant, shifted, atol=1e-5)  # no change: the same output whatever the scene


def test_attention_weights_are_a_distribution_over_dates():
    model = TemporalAttentionUNet(2, 2, dates=4, heads=3, **TINY).eval()
    x = torch.randn(2, 4, 2, 16, 16)
    with torch.no_grad():
        before = {k: v.clone() for k, v in model.state_dict().items()}
        logits = model(x)
        assert not any(hasattr(att, "last_weights") for att in model.attention)  # forward keeps no state
        maps = model.attention_weights(x)
    assert len(maps) == len(model.attention)
    for level, weights in enumerate(maps):
        assert weights.shape == (2, 4, 3, 16 >> level, 16 >> level)
        assert torch.allclose(weights.sum(dim=1), torch.ones(()), atol=1e-5)
    # asking for the weights changed nothing: forward gives the same logits, the weights are unchanged
    with torch.no_grad():
        assert torch.equal(model(x), logits)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_dates_can_be_the_list_of_dates():
    model = EarlyFusionUNet(3, 2, dates=["2017-08-01", "2018-08-01"], **TINY)
    assert model.dates == 2


def test_wrong_input_says_what_to_fix():
    model = LateFusionUNet(3, 2, dates=2, **TINY)
    with pytest.raises(ValueError, match=r"T=2 dates and C=3 bands.*got shape \(1, 3, 3, 16, 16\)"
                                         r".*dates=3"):
        model(torch.randn(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match=r"stack has 5 bands, not dates × bands = 2 × 3.*data\.dates"):
        model(torch.randn(1, 5, 16, 16))
    with pytest.raises(ValueError, match="fusion must be one of"):
        LateFusionUNet(3, 2, fusion="sum")
    with pytest.raises(ValueError, match="difference' needs at least 2 dates"):
        LateFusionUNet(3, 2, dates=1, fusion="difference")


@pytest.mark.parametrize("yaml_name", sorted(TEMPORAL_MODELS))
def test_shipped_temporal_configs_instantiate(yaml_name):
    hydra_utils = pytest.importorskip("hydra.utils")
    omegaconf = pytest.importorskip("omegaconf")
    assert "temporal" in yaml_name or "fusion" in yaml_name  # option names say what they are
    node = omegaconf.OmegaConf.load(REPO / "conf" / "model" / f"{yaml_name}.yaml")
    node.width = 4
    model = hydra_utils.instantiate(node, in_channels=6, classes=2, dates=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 6, 48, 48)).shape == (1, 2, 48, 48)


# --- a change that one date cannot show --------------------------------------------------------

def clearing_task(n: int, seed: int, size: int = 16, block: int = 4
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two dates × 2 bands (an NDVI-like band and a soil-like band); class 1 = cleared."""
    g = torch.Generator().manual_seed(seed)
    cells = size // block
    history = torch.randint(0, 4, (n, cells, cells), generator=g)  # bit 0: date 1, bit 1: date 2
    history = history.repeat_interleave(block, 1).repeat_interleave(block, 2)
    bare = torch.stack([history & 1, (history >> 1) & 1], dim=1).float()  # (n, 2, H, W)
    veg_band, soil_band = 1 - 2 * bare, 2 * bare - 1
    x = torch.stack([veg_band, soil_band], dim=2) + 0.4 * torch.randn(n, 2, 2, size, size, generator=g)
    y = ((bare[:, 0] == 0) & (bare[:, 1] == 1)).long()  # vegetated, then bare
    return x, y


def f1_cleared(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    tp = ((pred == 1) & (y == 1)).sum().item()
    fp = ((pred == 1) & (y == 0)).sum().item()
    fn = ((pred == 0) & (y == 1)).sum().item()
    return 2 * tp / max(2 * tp + fp + fn, 1)


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 40) -> None:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        batch = slice((step % 4) * 16, (step % 4 + 1) * 16)
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()


def test_two_dates_learn_a_clearing_that_one_date_cannot():
    x_train, y_train = clearing_task(64, seed=0)
    x_test, y_test = clearing_task(32, seed=1)
    assert 0.2 < y_train.float().mean() < 0.3  # a quarter of the pixels were cleared
    size = {"depth": 1, "width": 8}
    torch.manual_seed(0)
    early = EarlyFusionUNet(2, 2, dates=2, **size)
    torch.manual_seed(0)
    late = LateFusionUNet(2, 2, dates=2, fusion="concat", **size)
    torch.manual_seed(0)
    attention = TemporalAttentionUNet(2, 2, dates=2, heads=2, **size)
    torch.manual_seed(0)
    single = EarlyFusionUNet(2, 2, dates=1, **size)  # the same network seeing date 2 only
    for model in (early, late, attention):
        train(model, x_train, y_train)
    train(single, x_train[:, 1:], y_train)
    f1 = {"early": f1_cleared(early, x_test, y_test), "late": f1_cleared(late, x_test, y_test),
          "attention": f1_cleared(attention, x_test, y_test),
          "single": f1_cleared(single, x_test[:, 1:], y_test)}
    assert f1["early"] >= 0.8, f1
    assert f1["late"] >= 0.8, f1
    assert f1["attention"] >= 0.8, f1
    assert f1["single"] <= 0.7, f1  # at best 2/3: "bare now" is cleared only half of the time
    assert min(f1["early"], f1["late"]) - f1["single"] >= 0.15, f1
