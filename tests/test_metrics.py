import json

import numpy as np
import pytest

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.ml.metrics import add_roc_scores, roc_from_histograms, scores_from_confusion, thin_curve


def test_scores_from_a_known_confusion_matrix():
    cm = np.array([[8, 2], [1, 9]])  # rows reference, columns predicted
    s = scores_from_confusion(cm, ["a", "b"], cross_entropy=0.3)
    assert s["accuracy"] == pytest.approx(17 / 20)
    assert s["per_class"]["a"]["precision"] == pytest.approx(8 / 9)
    assert s["per_class"]["a"]["recall"] == pytest.approx(8 / 10)
    assert s["per_class"]["b"]["f1"] == pytest.approx(2 * 9 / (2 * 9 + 1 + 2))
    assert s["per_class"]["b"]["iou"] == pytest.approx(9 / 12)
    assert s["f1_macro"] == pytest.approx((16 / 19 + 18 / 21) / 2)
    assert s["cross_entropy"] == 0.3


def test_absent_class_is_left_out_of_macro_means_without_warnings():
    cm = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]])
    with np.errstate(all="raise"):
        s = scores_from_confusion(cm, ["a", "b", "c"])
    assert s["f1_macro"] == 1.0 and s["per_class"]["c"]["f1"] is None  # undefined, not a failure
    assert s["per_class"]["c"]["support"] == 0 and s["per_class"]["c"]["precision"] is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match 2 classes"):
        scores_from_confusion(np.zeros((3, 3)), ["a", "b"])


def test_confusion_of_rasters_counts_labelled_pixels_once(tmp_path):
    from deepgeo_runner.stages.evaluate import confusion_of_rasters
    from tests.helpers import write_image

    truth = np.array([[1, 1, 2, 2, 255], [0, 3, 3, 2, 1]], dtype=np.uint8)[None]
    guess = np.array([[1, 2, 2, 2, 1], [3, 3, 1, 255, 1]], dtype=np.uint8)[None]
    ref = write_image(tmp_path / "ref.tif", truth, nodata=255)
    pred = write_image(tmp_path / "pred.tif", guess, nodata=255)
    cm = confusion_of_rasters(ref, pred, [1, 2, 3], window=3)  # windows split the columns
    # reference 0 (background, not a class here) and 255 are skipped; prediction 255 is skipped
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    moved = write_image(tmp_path / "moved.tif", guess, nodata=255, crs="EPSG:32723")
    with pytest.raises(InputDataError, match="same grid"):
        confusion_of_rasters(ref, moved, [1, 2, 3])


def mann_whitney_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Reference AUC: the share of (positive, negative) pairs ranked right, ties counted 1/2."""
    pos, neg = scores[positive], scores[~positive]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def histograms(scores: np.ndarray, positive: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.minimum((scores * bins).astype(np.int64), bins - 1)
    pos = np.bincount(index[positive], minlength=bins)[None]
    neg = np.bincount(index[~positive], minlength=bins)[None]
    return pos, neg


@pytest.mark.parametrize("seed", range(5))
def test_histogram_auc_equals_the_pairwise_mann_whitney_auc(seed):
    rng = np.random.default_rng(seed)
    bins = 16  # coarse: many ties within bins, the case the 1/2 rule is about
    positive = rng.random(150) < 0.3
    raw = np.clip(rng.normal(0.4 + 0.2 * positive, 0.2), 0.0, 1.0)
    scores = np.minimum(np.floor(raw * bins), bins - 1) / bins  # quantized to the bin grid
    (fpr, tpr, auc), = roc_from_histograms(*histograms(scores, positive, bins))
    assert auc == pytest.approx(mann_whitney_auc(scores, positive), abs=1e-12)
    assert fpr.shape == tpr.shape == (bins + 1,)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()


def test_perfect_separator_constant_score_and_undefined_classes():
    pos = np.array([[0, 0, 0, 5], [0, 7, 0, 0], [0, 0, 0, 0], [0, 1, 2, 0]])
    neg = np.array([[4, 2, 0, 0], [0, 3, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    (_, _, perfect), (fpr, tpr, constant), (_, _, no_pos), (_, _, no_neg) = roc_from_histograms(pos, neg)
    assert perfect == 1.0 and constant == 0.5
    np.testing.assert_array_equal(fpr, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(tpr, [0, 0, 0, 1, 1])
    assert no_pos is None and no_neg is None


def test_histogram_shapes_must_agree():
    with pytest.raises(ValueError, match="classes, bins"):
        roc_from_histograms(np.zeros((2, 8)), np.zeros((2, 4)))


def test_thin_curve_drops_repeats_then_keeps_ends_and_order():
    fpr, tpr = thin_curve(np.array([0, 0, 0, 0.5, 1]), np.array([0, 0, 0.5, 0.5, 1]))
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 0.5, 1])
    x = np.linspace(0, 1, 1001)
    fpr, tpr = thin_curve(x, np.sqrt(x), max_points=257)
    assert len(fpr) <= 257 and (fpr[0], fpr[-1]) == (0.0, 1.0) and (np.diff(fpr) > 0).all()


def test_add_roc_scores_keeps_existing_keys_and_is_json_ready():
    scores = scores_from_confusion(np.array([[5, 1, 0], [1, 5, 0], [0, 0, 0]]), ["a", "b", "c"])
    pos = np.array([[0, 1, 5], [0, 1, 5], [0, 0, 0]])
    neg = np.array([[5, 1, 0], [5, 1, 0], [6, 6, 0]])
    out = add_roc_scores(scores, pos, neg)
    assert set(out) == set(scores) | {"auc_macro", "roc"}
    assert "auc" not in scores["per_class"]["a"]  # the input is left as it was
    assert out["per_class"]["c"]["auc"] is None
    assert out["auc_macro"] == pytest.approx(np.mean([out["per_class"]["a"]["auc"], out["per_class"]["b"]["auc"]]))
    assert out["per_class"]["a"]["auc"] == pytest.approx((5 * 6 + 1 * 5 + 0.5 * 1 * 1) / 36)
    assert json.loads(json.dumps(out))["roc"]["a"] == out["roc"]["a"]
    with pytest.raises(ValueError, match="do not match 3 classes"):
        add_roc_scores(scores, pos[:2], neg[:2])


def test_score_histograms_count_labelled_pixels_and_sum_across_ranks():
    from deepgeo_runner.lit.scores import ScoreHistograms

    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 8, 8, generator=gen) * 3
    target = torch.randint(0, 3, (4, 8, 8), generator=gen)
    target[0, :2] = 255
    whole = ScoreHistograms(3, ignore_index=255, bins=32)
    whole.update(logits, target)
    counts = whole.compute()
    probs = logits.softmax(dim=1).movedim(1, -1).numpy()
    labels = target.numpy()
    valid = labels != 255
    for k in range(3):
        pos, neg = histograms(probs[..., k][valid], labels[valid] == k, 32)
        np.testing.assert_array_equal(counts["positives"][k].numpy(), pos[0])
        np.testing.assert_array_equal(counts["negatives"][k].numpy(), neg[0])
    # two ranks each see half the batch; DDP sums their states
    halves = [ScoreHistograms(3, ignore_index=255, bins=32) for _ in range(2)]
    halves[0].update(logits[:2], target[:2])
    halves[1].update(logits[2:], target[2:])
    for key in ("positives", "negatives"):
        summed = halves[0].compute()[key] + halves[1].compute()[key]
        assert torch.equal(summed, counts[key])


def test_cohen_kappa_matches_the_textbook_example():
    # Congalton & Green's style example: po = 0.7, pe = 0.5 -> kappa 0.4
    cm = np.array([[35, 15], [15, 35]])
    s = scores_from_confusion(cm, ["a", "b"])
    assert s["kappa"] == pytest.approx(0.4)
    assert scores_from_confusion(np.diag([3, 4]), ["a", "b"])["kappa"] == pytest.approx(1.0)
    assert scores_from_confusion(np.zeros((2, 2)), ["a", "b"])["kappa"] is None
