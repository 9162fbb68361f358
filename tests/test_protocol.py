"""The field's protocol on hand-made rasters: the ignore ring and the minimum-mapping-unit sieve,
pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest

from deepgeo_runner.geo.boundary import border_ring, ignore_borders
from deepgeo_runner.geo.sieve import mmu_pixels, sieve_classes

X = 255  # ignored / unlabelled


def test_a_ring_of_one_pixel_on_both_sides_of_a_class_border():
    labels = np.array([[1, 1, 1, 2, 2, 2]] * 3, dtype=np.uint8)
    expected = np.array([[1, 1, X, X, 2, 2]] * 3, dtype=np.uint8)
    np.testing.assert_array_equal(ignore_borders(labels, 1), expected)


def test_a_ring_of_two_pixels_and_the_scene_edge_is_no_border():
    labels = np.array([[1] * 4 + [2] * 4] * 2, dtype=np.uint8)
    expected = np.array([[1, 1, X, X, X, X, 2, 2]] * 2, dtype=np.uint8)
    np.testing.assert_array_equal(ignore_borders(labels, 2), expected)


def test_a_sparse_polygon_is_eroded_by_the_ring_and_diagonals_count_sqrt2():
    labels = np.full((6, 6), X, dtype=np.uint8)
    labels[1:5, 1:5] = 3  # a 4x4 polygon in unlabelled land
    expected = np.full((6, 6), X, dtype=np.uint8)
    expected[2:4, 2:4] = 3
    np.testing.assert_array_equal(ignore_borders(labels, 1), expected)
    # width 1: a pixel whose nearest other value is a diagonal neighbour (distance sqrt 2) stays
    corner = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(border_ring(corner, 1), [[0, 0, 0], [0, 0, 1], [0, 1, 1]])
    assert not border_ring(corner, 0).any()
    with pytest.raises(ValueError, match=">= 0"):
        border_ring(corner, -1)


def test_the_sieve_merges_patches_under_the_unit_into_their_surroundings_and_keeps_nodata():
    classes = np.ones((8, 8), dtype=np.uint8)
    classes[1:3, 1:3] = 2          # 4 px: under the unit
    classes[4:7, 4:7] = 3          # 9 px: kept
    classes[0, 7] = X              # nodata never changes, never absorbs
    classes[7, 0] = 2              # a lone pixel in the corner
    expected = np.ones((8, 8), dtype=np.uint8)
    expected[4:7, 4:7] = 3
    expected[0, 7] = X
    # 30 m pixels are 0.09 ha; 0.5 ha needs 6 pixels
    assert mmu_pixels(0.5, 0.09) == 6
    np.testing.assert_array_equal(sieve_classes(classes, 6), expected)
    np.testing.assert_array_equal(sieve_classes(classes, 1), classes)  # no unit: unchanged


def test_prodes_unit_at_30_m_and_pixel_areas_in_a_geographic_crs():
    assert mmu_pixels(6.25, 0.09) == 70  # 6.25 ha / 0.09 ha = 69.4 -> 70 pixels
    assert mmu_pixels(0.09, 0.09) == 1
