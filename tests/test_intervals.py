"""Block-bootstrap intervals, precision–recall curves and the error map: small known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepgeo_runner.lit.scores import ConfusionState, per_sample_confusion
from deepgeo_runner.ml.bootstrap import batch_scores, block_bootstrap
from deepgeo_runner.ml.metrics import add_pr_scores, pr_from_histograms, scores_from_confusion
from deepgeo_runner.report.error_map import COMMISSION, CORRECT, OMISSION, OUTSIDE, error_codes, error_counts
from deepgeo_runner.stages.intervals import block_confusions, chip_blocks

NAMES = ["forest", "clearing", "water"]


def fabricated_blocks(n: int = 12, seed: int = 3) -> np.ndarray:
    """Per-block confusion matrices of varying quality; 'water' only in some blocks."""
    rng = np.random.default_rng(seed)
    cms = np.zeros((n, 3, 3), dtype=np.int64)
    for b in range(n):
        for k in range(3 if b % 3 == 0 else 2):
            total = int(rng.integers(50, 400))
            right = int(total * rng.uniform(0.5, 0.95))
            cms[b, k, k] = right
            cms[b, k, (k + 1) % 3] = total - right
    return cms


def test_bootstrap_matches_an_independent_loop_over_the_same_draws():
    cms = fabricated_blocks()
    got = block_bootstrap(cms, NAMES, resamples=200, seed=7)
    draws = np.random.default_rng(7).integers(0, len(cms), size=(200, len(cms)))
    loop = [scores_from_confusion(cms[d].sum(axis=0), NAMES) for d in draws]
    for key in ("accuracy", "kappa", "f1_macro", "iou_macro"):
        assert got[key] == pytest.approx(list(np.percentile([s[key] for s in loop], [2.5, 97.5])))
    for name in NAMES:
        f1 = [s["per_class"][name]["f1"] for s in loop if s["per_class"][name]["f1"] is not None]
        assert got["per_class"][name]["f1"] == pytest.approx(list(np.percentile(f1, [2.5, 97.5])))


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    cms = fabricated_blocks()
    first, again = block_bootstrap(cms, NAMES, seed=1), block_bootstrap(cms, NAMES, seed=1)
    assert first == again
    assert block_bootstrap(cms, NAMES, seed=2) != first
    point = scores_from_confusion(cms.sum(axis=0), NAMES)
    for key in ("accuracy", "f1_macro", "iou_macro", "kappa"):
        lo, hi = first[key]
        assert lo < point[key] < hi and hi - lo > 0.01


def test_identical_blocks_give_a_zero_width_interval_at_the_score():
    cm = np.array([[80, 20, 0], [10, 90, 0], [0, 5, 15]])
    ci = block_bootstrap(np.stack([cm] * 6), NAMES, resamples=50, seed=0)
    point = scores_from_confusion(cm, NAMES)
    assert ci["accuracy"] == pytest.approx([point["accuracy"]] * 2)
    assert ci["kappa"] == pytest.approx([point["kappa"]] * 2)  # 0.7634... by hand: (0.8846 - 0.5127) / 0.4873
    assert ci["per_class"]["water"]["f1"] == pytest.approx([0.75 * 2 / 1.75] * 2)  # 2·15 / (20 + 15)


def test_batch_scores_agree_with_scores_from_confusion_where_a_class_is_absent():
    cm = np.array([[30, 5, 0], [4, 20, 1], [0, 0, 0]])
    batch = batch_scores(cm[None])
    one = scores_from_confusion(cm, NAMES)
    for key in ("accuracy", "kappa", "f1_macro", "iou_macro"):
        assert batch[key][0] == pytest.approx(one[key])
    assert np.isnan(batch["f1"][0, 2]) and one["per_class"]["water"]["f1"] is None


def test_chips_are_grouped_by_the_block_holding_their_centre():
    records = [{"split": "test", "index": i, "row": r, "col": c, "size": 32}
               for i, (r, c) in enumerate([(0, 0), (0, 32), (32, 0), (64, 64), (64, 96)])]
    records.append({"split": "val", "index": 0, "row": 0, "col": 0, "size": 32})
    blocks = chip_blocks(records, "test", 64)
    assert blocks == {0: ("data.image", 0, 0), 1: ("data.image", 0, 0), 2: ("data.image", 0, 0),
                      3: ("data.image", 1, 1), 4: ("data.image", 1, 1)}
    chips = np.arange(5 * 4).reshape(5, 2, 2)
    assert block_confusions(chips, blocks).tolist() == [(chips[0] + chips[1] + chips[2]).tolist(),
                                                          (chips[3] + chips[4]).tolist()]


def test_per_chip_confusions_sum_to_the_split_confusion():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, 8, 8, generator=gen)
    target = torch.randint(0, 3, (5, 8, 8), generator=gen)
    target[1, :4] = 255
    per_chip = per_sample_confusion(logits, target, 3).view(5, 3, 3)
    state = ConfusionState(3)
    state.update(logits, target)
    assert torch.equal(per_chip.sum(dim=0), state.compute()["confusion"])
    one = per_sample_confusion(logits[2:3], target[2:3], 3).view(3, 3)
    assert torch.equal(per_chip[2], one)


def _histograms(scores: np.ndarray, truth: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    index = np.clip((scores * bins).astype(int), 0, bins - 1)
    pos = np.bincount(index[truth], minlength=bins)[None]
    neg = np.bincount(index[~truth], minlength=bins)[None]
    return pos, neg


def _ap_by_sorting(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision from the sorted pixels, tied scores as one threshold."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # the last pixel of each tie group
    tp, fp = np.cumsum(t)[last], np.cumsum(~t)[last]
    recall, precision = tp / t.sum(), tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def test_average_precision_of_a_perfect_and_of_a_random_classifier():
    rng = np.random.default_rng(0)
    truth = rng.random(20_000) < 0.2
    perfect = np.where(truth, rng.uniform(0.9, 1.0, truth.size), rng.uniform(0.0, 0.5, truth.size))
    (_, _, ap), = pr_from_histograms(*_histograms(perfect, truth))
    assert ap == pytest.approx(1.0)
    noise = rng.random(truth.size)
    (recall, precision, ap), = pr_from_histograms(*_histograms(noise, truth))
    assert ap == pytest.approx(truth.mean(), abs=0.02)  # no skill: the prevalence
    assert recall[-1] == 1.0 and precision[-1] == pytest.approx(truth.mean())
    quantized = np.clip((noise * 256).astype(int), 0, 255) / 256
    assert ap == pytest.approx(_ap_by_sorting(quantized, truth))  # same as ranking the (binned) pixels


def test_pr_scores_are_added_without_touching_the_others():
    scores = scores_from_confusion(np.array([[5, 1], [2, 4]]), ["a", "b"])
    pos = np.array([[0, 1, 5], [0, 0, 0]])
    neg = np.array([[3, 2, 0], [1, 1, 1]])
    out = add_pr_scores(scores, pos, neg)
    ap = 5 / 6 * 1.0 + 1 / 6 * 6 / 8  # top bin: 5 of 6 positives, no negative; then all 6 among 8
    assert out["per_class"]["a"]["ap"] == pytest.approx(ap) and out["per_class"]["b"]["ap"] is None
    assert out["pr"]["a"] == {"recall": [pytest.approx(5 / 6), 1.0, 1.0],
                              "precision": [1.0, 0.75, pytest.approx(6 / 11)]}  # the last bin: 3 more negatives
    assert out["ap_macro"] == pytest.approx(ap) and out["pr"]["b"] == {"recall": [], "precision": []}
    assert out["per_class"]["a"]["f1"] == scores["per_class"]["a"]["f1"] and "ap" not in scores["per_class"]["a"]


def test_error_codes_count_correct_omission_and_commission():
    reference = np.array([[1, 1, 2, 0],
                          [1, 2, 2, 255],
                          [3, 3, 1, 2]], dtype=np.uint8)
    predicted = np.array([[1, 2, 2, 1],
                          [1, 1, 3, 1],
                          [3, 1, 1, 2]], dtype=np.uint8)
    codes = error_codes(reference, predicted, 1, (1, 2, 3))
    assert error_counts(codes) == {"correct": 3, "omission": 1, "commission": 2, "other": 4}
    assert codes[0, 3] == OUTSIDE and codes[1, 3] == OUTSIDE  # unlabelled and nodata: no reference
    assert codes[0, 1] == OMISSION and codes[1, 1] == COMMISSION and codes[2, 2] == CORRECT
    area = np.zeros_like(reference, dtype=bool)
    area[2] = True
    assert error_counts(error_codes(reference, predicted, 1, (1, 2, 3), area)) == {
        "correct": 1, "omission": 0, "commission": 1, "other": 2}
    assert error_counts(error_codes(reference, predicted, 2, (1, 2, 3))) == {
        "correct": 2, "omission": 2, "commission": 1, "other": 5}
