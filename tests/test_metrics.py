import numpy as np
import pytest

from deepgeo_runner.metrics import scores_from_confusion


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
    assert s["f1_macro"] == 1.0 and s["per_class"]["c"]["f1"] == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match 2 classes"):
        scores_from_confusion(np.zeros((3, 3)), ["a", "b"])
