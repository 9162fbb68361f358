"""Every normalization strategy against a plain numpy reference, nodata and training area included."""

import numpy as np
import pytest
from rasterio.windows import Window

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.normalize import (
    NormOptions,
    NormStats,
    StatsAccumulator,
    apply_stats,
    fit_stats,
    new_accumulator,
    standardize_chips,
    stats_from_accumulator,
)
from deepgeo_runner.geo.raster_io import iter_windows

NODATA = -9999.0


@pytest.fixture
def scene():
    """3 bands of 20×24 with different ranges, a nodata block and a training area on the left."""
    rng = np.random.default_rng(1)
    stack = np.stack([rng.normal(0.1, 0.02, (20, 24)), rng.normal(2000, 300, (20, 24)),
                      rng.gamma(2.0, 5.0, (20, 24))]).astype(np.float32)
    stack[:, 2:6, 3:9] = NODATA  # nodata inside the training area: must not count
    valid = np.all(stack != NODATA, axis=0)
    train = np.zeros((20, 24), dtype=bool)
    train[:, :14] = True
    stack[:, :, 20:] *= 50  # outliers outside the training area: must not count either
    return stack, valid, train


def _ref_values(stack, valid, train):
    return stack[:, valid & train].astype(np.float64)  # (C, n)


def test_standard_is_mean_and_std_of_valid_training_pixels(scene):
    stack, valid, train = scene
    ref = _ref_values(stack, valid, train)
    stats = fit_stats(stack, valid & train, "standard")
    np.testing.assert_allclose(stats.shift, ref.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.scale, ref.std(axis=1), rtol=1e-10)
    out = apply_stats(stack, stats)[:, valid & train]
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-5)


def test_median_std(scene):
    stack, valid, train = scene
    ref = _ref_values(stack, valid, train)
    stats = fit_stats(stack, valid & train, "median_std")
    np.testing.assert_allclose(stats.shift, np.median(ref, axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.scale, ref.std(axis=1), rtol=1e-10)


@pytest.mark.parametrize("per_band", [True, False])
def test_minmax_to_a_range(scene, per_band):
    stack, valid, train = scene
    ref = _ref_values(stack, valid, train)
    opts = NormOptions("minmax", per_band=per_band, out_range=(-1.0, 1.0))
    out = apply_stats(stack, fit_stats(stack, valid & train, opts))
    lo = ref.min(axis=1) if per_band else np.full(3, ref.min())
    hi = ref.max(axis=1) if per_band else np.full(3, ref.max())
    want = (stack.astype(np.float64) - lo[:, None, None]) / (hi - lo)[:, None, None] * 2 - 1
    m = valid & train
    np.testing.assert_allclose(out[:, m], want[:, m], atol=1e-5)
    assert out[:, m].min() == pytest.approx(-1, abs=1e-6) and out[:, m].max() == pytest.approx(1, abs=1e-6)


@pytest.mark.parametrize("per_band", [True, False])
def test_percentile_clip_then_scale(scene, per_band):
    stack, valid, train = scene
    ref = _ref_values(stack, valid, train)
    opts = NormOptions("percentile", per_band=per_band, percentiles=(2.0, 98.0))
    stats = fit_stats(stack, valid & train, opts)
    if per_band:
        lo, hi = np.percentile(ref, [2, 98], axis=1)
    else:
        lo, hi = (np.full(3, v) for v in np.percentile(ref, [2, 98]))
    np.testing.assert_allclose(stats.clip_min, lo, rtol=1e-12)
    np.testing.assert_allclose(stats.clip_max, hi, rtol=1e-12)
    out = apply_stats(stack, stats)
    lo3, hi3 = lo[:, None, None], hi[:, None, None]
    want = (np.clip(stack, lo3, hi3) - lo3) / (hi3 - lo3)
    np.testing.assert_allclose(out[:, valid], want[:, valid], atol=1e-5)
    assert out[:, valid].min() >= -1e-6 and out[:, valid].max() <= 1 + 1e-6  # outliers clipped


def test_constant_none_and_per_chip_need_no_fit():
    stack = np.full((2, 4, 4), 5000, dtype=np.uint16)
    empty = np.zeros((4, 4), dtype=bool)  # no training pixel: still fine
    divided = apply_stats(stack, fit_stats(stack, empty, NormOptions("constant", constant=1e4)))
    np.testing.assert_allclose(divided, 0.5)
    np.testing.assert_array_equal(apply_stats(stack, fit_stats(stack, empty, "none")), 5000)
    stats = fit_stats(stack, empty, "per_chip")
    assert stats.per_chip and NormStats.from_dict(stats.to_dict()).per_chip


def test_no_training_pixel_is_a_clear_error(scene):
    stack, _, _ = scene
    with pytest.raises(InputDataError, match="no valid pixel in the training area"):
        fit_stats(stack, np.zeros(stack.shape[1:], dtype=bool), "standard")


def test_constant_band_keeps_scale_one():
    stack = np.ones((1, 5, 5), dtype=np.float32)
    stats = fit_stats(stack, np.ones((5, 5), dtype=bool), "standard")
    assert stats.scale == [1.0] and np.isfinite(apply_stats(stack, stats)).all()


@pytest.mark.parametrize("method", ["standard", "median_std", "minmax", "percentile"])
def test_streaming_over_windows_equals_one_pass(scene, method):
    stack, valid, train = scene
    opts = NormOptions(method)
    whole = fit_stats(stack, valid & train, opts)
    acc = new_accumulator(3, opts)
    for win in iter_windows(20, 24, 7):
        sl = win.toslices()
        rows = np.arange(win.row_off, win.row_off + win.height, dtype=np.uint64)
        cols = np.arange(win.col_off, win.col_off + win.width, dtype=np.uint64)
        acc.update(stack[(slice(None), *sl)], (valid & train)[sl], rows[:, None] * np.uint64(24) + cols)
    streamed = stats_from_accumulator(acc, 3, opts)
    np.testing.assert_allclose(streamed.shift, whole.shift, rtol=1e-9)
    np.testing.assert_allclose(streamed.scale, whole.scale, rtol=1e-9)


def test_subsample_is_bounded_uniform_and_independent_of_windows():
    rng = np.random.default_rng(0)
    stack = rng.uniform(0, 100, (1, 200, 200))
    mask = np.ones((200, 200), dtype=bool)
    flat = np.arange(40000, dtype=np.uint64).reshape(200, 200)
    one = StatsAccumulator(1, samples=5000, keep_sample=True)
    one.update(stack, mask, flat)
    tiled = StatsAccumulator(1, samples=5000, keep_sample=True)
    for r in range(0, 200, 50):
        tiled.update(stack[:, r:r + 50], mask[r:r + 50], flat[r:r + 50])
    assert one.sample().shape == (5000, 1)
    np.testing.assert_array_equal(np.sort(one.sample()[:, 0]), np.sort(tiled.sample()[:, 0]))
    assert abs(np.median(one.sample()) - 50) < 3  # a uniform sample of U(0, 100)


def test_per_chip_standardization_matches_numpy_and_keeps_nodata():
    rng = np.random.default_rng(2)
    chips = rng.normal(3, 2, (4, 2, 8, 8)).astype(np.float32)
    chips[1, :, :2, :2] = NODATA
    chips[3] = NODATA  # no valid pixel: unchanged
    out = standardize_chips(chips, NODATA)
    for i in range(3):
        ok = np.all(chips[i] != NODATA, axis=0)
        vals = chips[i][:, ok].astype(np.float64)
        want = (vals - vals.mean(axis=1, keepdims=True)) / vals.std(axis=1, keepdims=True)
        np.testing.assert_allclose(out[i][:, ok], want, atol=1e-5)
    assert (out[1, :, :2, :2] == NODATA).all() and (out[3] == NODATA).all()
    np.testing.assert_allclose(standardize_chips(chips[0]), out[0], atol=1e-6)  # (C, H, W) too


def test_bad_options_name_the_key():
    with pytest.raises(ConfigError, match="unknown method 'zscore'"):
        NormOptions("zscore").check()
    with pytest.raises(ConfigError, match="norm_percentiles"):
        NormOptions("percentile", percentiles=(98, 2)).check()
    with pytest.raises(ConfigError, match="norm_range"):
        NormOptions("minmax", out_range=(1, 1)).check()


def test_windows_cover_the_grid_once():
    cover = np.zeros((37, 50), dtype=int)
    for win in iter_windows(37, 50, 16):
        assert isinstance(win, Window)
        cover[win.toslices()] += 1
    assert (cover == 1).all()
