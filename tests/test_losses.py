"""Losses: hand-computed values on 2–3 pixel examples, ignored pixels, gradients, perfect fits.

The examples use logits whose softmax is exact: [0, 0] -> (1/2, 1/2) and [ln 3, 0] -> (3/4, 1/4).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from deepgeo_runner.ml.losses import (
    WEIGHT_METHODS,
    CombinedLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    class_weights_from_counts,
    needs_class_counts,
    set_class_counts,
)

REPO = Path(__file__).resolve().parents[1]
LN2, LN3 = math.log(2), math.log(3)
HALF, THREE_QUARTERS = [0.0, 0.0], [LN3, 0.0]  # softmax (1/2, 1/2) and (3/4, 1/4)


def pixels(*logits: list[float], targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, K, 1, N) and targets (1, 1, N) from per-pixel lists."""
    x = torch.tensor(logits, dtype=torch.float32).T[None, :, None, :]
    return x.contiguous(), torch.tensor(targets)[None, None, :]


def two_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel A: p=(1/2, 1/2), class 0; pixel B: p=(3/4, 1/4), class 1."""
    return pixels(HALF, THREE_QUARTERS, targets=[0, 1])


ALL_LOSSES = {
    "ce": lambda: CrossEntropyLoss(),
    "ce_weighted": lambda: CrossEntropyLoss(class_weights=[1.0, 3.0, 0.5]),
    "dice": lambda: DiceLoss(),
    "generalized_dice": lambda: GeneralizedDiceLoss(),
    "jaccard": lambda: JaccardLoss(),
    "focal": lambda: FocalLoss(gamma=2.0, alpha=[0.25, 0.5, 0.25]),
    "combined": lambda: CombinedLoss([(CrossEntropyLoss(), 1.0), (DiceLoss(), 0.5)]),
}


def test_cross_entropy_by_hand():
    x, y = two_pixels()
    # -(ln 1/2 + ln 1/4) / 2
    assert CrossEntropyLoss()(x, y).item() == pytest.approx((LN2 + 2 * LN2) / 2, rel=1e-6)
    # weighted mean: (1·ln 2 + 3·ln 4) / (1 + 3)
    weighted = CrossEntropyLoss(class_weights=[1.0, 3.0])(x, y).item()
    assert weighted == pytest.approx((LN2 + 3 * 2 * LN2) / 4, rel=1e-6)


def test_dice_by_hand():
    x, y = two_pixels()
    # class 0: I=1/2, P=5/4, G=1 -> 4/9; class 1: I=1/4, P=3/4, G=1 -> 2/7
    expected = 1 - (4 / 9 + 2 / 7) / 2
    assert DiceLoss(smooth=0)(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_jaccard_by_hand():
    x, y = two_pixels()
    # class 0: 1/2 / (5/4 + 1 - 1/2) = 2/7; class 1: 1/4 / (3/4 + 1 - 1/4) = 1/6
    expected = 1 - (2 / 7 + 1 / 6) / 2
    assert JaccardLoss(smooth=0)(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_generalized_dice_by_hand_weights_classes_by_inverse_squared_size():
    # A: (1/2, 1/2) class 0; B: (3/4, 1/4) class 1; C: (3/4, 1/4) class 0.
    x, y = pixels(HALF, THREE_QUARTERS, THREE_QUARTERS, targets=[0, 1, 0])
    # G = (2, 1) -> w = (1/4, 1); I = (5/4, 1/4); P = (2, 1)
    num = 2 * (1 / 4 * 5 / 4 + 1 * 1 / 4)
    den = 1 / 4 * (2 + 2) + 1 * (1 + 1)
    assert GeneralizedDiceLoss(smooth=0)(x, y).item() == pytest.approx(1 - num / den, rel=1e-6)
    # plain Dice of the same pixels differs: the weighting matters
    assert DiceLoss(smooth=0)(x, y).item() != pytest.approx(1 - num / den, rel=1e-3)


def test_focal_by_hand():
    x, y = two_pixels()
    # -(1 - 1/2)^2 ln 1/2 and -(1 - 1/4)^2 ln 1/4, mean
    expected = (0.25 * LN2 + 0.5625 * 2 * LN2) / 2
    assert FocalLoss(gamma=2)(x, y).item() == pytest.approx(expected, rel=1e-6)
    # gamma 0 is cross-entropy; alpha weights each pixel by its class's alpha
    assert FocalLoss(gamma=0)(x, y).item() == pytest.approx(CrossEntropyLoss()(x, y).item(), rel=1e-6)
    alpha = FocalLoss(gamma=0, alpha=[2.0, 0.5])(x, y).item()
    assert alpha == pytest.approx((2 * LN2 + 0.5 * 2 * LN2) / 2, rel=1e-6)


def test_combined_is_the_weighted_sum():
    x, y = two_pixels()
    combined = CombinedLoss([(CrossEntropyLoss(), 1.0), (DiceLoss(smooth=0), 0.5)])(x, y).item()
    expected = (LN2 + 2 * LN2) / 2 + 0.5 * (1 - (4 / 9 + 2 / 7) / 2)
    assert combined == pytest.approx(expected, rel=1e-6)
    yaml_style = CombinedLoss([{"loss": FocalLoss(), "weight": 2.0}, {"loss": JaccardLoss()}])
    assert yaml_style.weights == [2.0, 1.0]


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_ignored_pixels_do_not_change_the_value(name):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (2, 8, 8), generator=g)
    loss = ALL_LOSSES[name]()
    base = loss(x, y).item()
    # extra ignored pixels with arbitrary logits, and scrambled logits under ignored targets
    x_wide = torch.cat([x, 50 * torch.randn(2, 3, 8, 4, generator=g)], dim=-1)
    y_wide = torch.cat([y, torch.full((2, 8, 4), 255)], dim=-1)
    assert loss(x_wide, y_wide).item() == pytest.approx(base, rel=1e-5)
    y_part = y.clone()
    y_part[:, :2] = 255
    x_scrambled = x.clone()
    x_scrambled[:, :, :2] = 100 * torch.randn(2, 3, 2, 8, generator=g)
    assert loss(x_scrambled, y_part).item() == pytest.approx(loss(x, y_part).item(), rel=1e-5)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_gradients_finite_even_with_absent_classes_and_all_ignored(name):
    loss = ALL_LOSSES[name]()
    x = (10 * torch.randn(2, 3, 6, 6)).requires_grad_()
    y = torch.zeros(2, 6, 6, dtype=torch.long)  # classes 1 and 2 absent
    y[0, :3] = 255
    value = loss(x, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    x.grad = None
    all_ignored = loss(x, torch.full((2, 6, 6), 255))
    all_ignored.backward()
    assert all_ignored.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cls", [DiceLoss, GeneralizedDiceLoss, JaccardLoss, FocalLoss])
def test_perfect_prediction_gives_about_zero(cls):
    y = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    y[0, 0] = 255
    x = 30.0 * torch.nn.functional.one_hot(y.clamp_max(3), 4).permute(0, 3, 1, 2).float()
    assert cls()(x, y).item() == pytest.approx(0.0, abs=1e-5)
    assert cls()(-x, y).item() > 0.5  # and a wrong one does not


def test_class_weights_from_counts_follow_the_toolbox_heuristics():
    counts = [30, 10, 0, 60]  # proportions 0.3, 0.1, 0, 0.6
    mean = class_weights_from_counts(counts, "mean_proportion")
    assert mean == pytest.approx([(1 / 3) / 0.3, (1 / 3) / 0.1, 0.0, (1 / 3) / 0.6])
    assert class_weights_from_counts(counts, "one_minus_proportion") == pytest.approx([0.7, 0.9, 0.0, 0.4])
    inv = class_weights_from_counts(counts, "inverse_squared_proportion")
    assert inv == pytest.approx([1 / 0.09, 100.0, 0.0, 1 / 0.36])
    assert set(WEIGHT_METHODS) == {"mean_proportion", "one_minus_proportion", "inverse_squared_proportion"}
    with pytest.raises(ValueError, match=r"Unknown class weight method 'median'.*mean_proportion"):
        class_weights_from_counts(counts, "median")
    with pytest.raises(ValueError, match="at least one labelled pixel"):
        class_weights_from_counts([0, 0], "mean_proportion")


def test_weight_method_waits_for_counts_then_matches_explicit_weights():
    x, y = two_pixels()
    pending = CombinedLoss([(CrossEntropyLoss(class_weights="inverse_squared_proportion"), 1.0),
                            (DiceLoss(), 1.0)])
    assert needs_class_counts(pending) and not needs_class_counts(CrossEntropyLoss())
    with pytest.raises(RuntimeError, match="set_class_counts"):
        pending(x, y)
    set_class_counts(pending, [80, 20])
    explicit = CombinedLoss([(CrossEntropyLoss(class_weights=[1 / 0.64, 1 / 0.04]), 1.0),
                             (DiceLoss(), 1.0)])
    assert pending(x, y).item() == pytest.approx(explicit(x, y).item(), rel=1e-6)


def test_bad_inputs_say_what_is_wrong():
    x, y = two_pixels()
    with pytest.raises(ValueError, match=r"class_weights has 3 values for 2 model outputs"):
        CrossEntropyLoss(class_weights=[1, 2, 3])(x, y)
    with pytest.raises(ValueError, match=r"logits \(B, K, H, W\).*align_target"):
        DiceLoss()(x, y[..., :1])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        DiceLoss()(x, torch.tensor([[[0, 7]]]))
    with pytest.raises(ValueError, match=r"class_weights='balanced'.*mean_proportion"):
        CrossEntropyLoss(class_weights="balanced")


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "loss").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_loss_configs_instantiate(path):
    hydra_utils = pytest.importorskip("hydra.utils")
    omegaconf = pytest.importorskip("omegaconf")
    loss = hydra_utils.instantiate(omegaconf.OmegaConf.load(path))
    if needs_class_counts(loss):
        set_class_counts(loss, [10, 30, 60])
    x, y = torch.randn(2, 3, 8, 8, requires_grad=True), torch.randint(0, 3, (2, 8, 8))
    value = loss(x, y)
    value.backward()
    assert torch.isfinite(value) and value.item() > 0 and torch.isfinite(x.grad).all()
