import numpy as np
import pytest

from deepgeo_runner.errors import InputDataError
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


def test_confusion_of_rasters_counts_labelled_pixels_once(tmp_path):
    from deepgeo_runner.pipeline.evaluate import confusion_of_rasters
    from tests.conftest import write_image

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
