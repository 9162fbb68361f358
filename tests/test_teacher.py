"""Teacher labels between sparse polygons (issue 20): pixel-exact masks on hand-made chips."""

from __future__ import annotations

import numpy as np
import torch

from deepgeo_runner.ml.copy_paste import copy_paste
from deepgeo_runner.ml.teacher import IGNORE, TEACHER_OFFSET, decode, polygon_pixels, teacher_masks

T = TEACHER_OFFSET


def _threshold_teacher(pixels: np.ndarray) -> np.ndarray:
    """Class 1 where feature 0 > 0.5, else class 0; sure (0.9) unless feature 1 says unsure (0.6)."""
    cls = (pixels[:, 0] > 0.5).astype(int)
    sure = np.where(pixels[:, 1] > 0.5, 0.6, 0.9)
    proba = np.empty((len(pixels), 2), dtype=np.float32)
    proba[np.arange(len(pixels)), cls] = sure
    proba[np.arange(len(pixels)), 1 - cls] = 1 - sure
    return proba


def _chip() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((1, 2, 4, 4), 0.1, dtype=np.float32)
    image[0, 0, :, 2:] = 0.9  # right half: class 1 to the teacher
    image[0, 1, 3, 0] = 0.9  # one unsure pixel
    image[0, :, 0, 3] = 0.0  # one nodata pixel (the store zeroes nodata)
    mask = np.full((1, 4, 4), IGNORE, dtype=np.uint8)
    mask[0, 0, 0] = 1  # a polygon label the teacher disagrees with: kept
    return image, mask


def test_teacher_labels_only_unlabelled_sure_valid_pixels():
    image, mask = _chip()
    taught, counts = teacher_masks(image, mask, _threshold_teacher, confidence=0.8)
    expected = np.array([[1, T + 0, T + 1, IGNORE],
                         [T + 0, T + 0, T + 1, T + 1],
                         [T + 0, T + 0, T + 1, T + 1],
                         [IGNORE, T + 0, T + 1, T + 1]], dtype=np.uint8)
    np.testing.assert_array_equal(taught[0], expected)
    assert counts == {"teacher_pixels_per_class": [6, 7], "unsure_pixels": 1}
    np.testing.assert_array_equal(mask[0, 0, 0], 1)  # the input is not changed in place


def test_teacher_keeps_off_the_protocol_ring():
    image, mask = _chip()
    taught, _ = teacher_masks(image, mask, _threshold_teacher, confidence=0.8, keep_off_px=1)
    assert taught[0, 0, 1] == IGNORE and taught[0, 1, 0] == IGNORE and taught[0, 1, 1] == IGNORE
    assert taught[0, 2, 2] == T + 1 and taught[0, 0, 2] == T + 1


def test_decode_and_polygon_pixels():
    mask = torch.tensor([[0, 1, T + 0, T + 2, IGNORE]])
    assert decode(mask).tolist() == [[0, 1, 0, 2, IGNORE]]
    assert polygon_pixels(mask).tolist() == [[True, True, False, False, False]]


def test_copy_paste_moves_polygon_labels_not_teacher_labels():
    image = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    mask = torch.tensor([[[0, T + 1], [T + 1, T + 1]],
                         [[T + 0, 1], [IGNORE, T + 0]]], dtype=torch.long)
    out_image, out_mask = copy_paste(image, mask, torch.Generator().manual_seed(0), p=1.0)
    # chip 0 receives chip 1's polygon pixel (0, 1) only; chip 1 receives chip 0's (0, 0) only
    assert out_mask[0].tolist() == [[0, 1], [T + 1, T + 1]]
    assert out_mask[1].tolist() == [[0, 1], [IGNORE, T + 0]]
    assert out_image[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert out_image[1, 0].tolist() == [[0.0, 1.0], [1.0, 1.0]]
