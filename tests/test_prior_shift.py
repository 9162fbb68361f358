"""The scene's class priors by EM (ml/prior_shift.py): recovered on data whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from deepgeo_runner.ml.prior_shift import MAX_RATIO, estimate_scene_priors, recovery_error

MEANS = np.array([0.0, 1.5, 3.0])  # three classes along one feature, unit variance: they overlap


def bayes_posteriors(x: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The exact posterior of each class at ``x`` under ``prior``: what a calibrated classifier outputs."""
    likelihood = np.exp(-0.5 * (x[:, None] - MEANS[None]) ** 2)
    joint = likelihood * prior[None]
    return joint / joint.sum(axis=1, keepdims=True)


def draw(prior: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(len(prior), size=n, p=prior)
    return rng.normal(MEANS[y], 1.0), y


def test_em_recovers_the_scene_priors_and_mends_the_map():
    train_prior = np.array([0.45, 0.40, 0.15])  # polygons drawn class by class
    scene_prior = np.array([0.75, 0.19, 0.06])  # the land cover
    x, y = draw(scene_prior, 40_000, seed=0)
    posteriors = bayes_posteriors(x, train_prior)
    est = estimate_scene_priors(posteriors, train_prior * 10_000)
    assert est.converged and est.adjusted == (True, True, True)
    np.testing.assert_allclose(est.scene, scene_prior, atol=0.02)
    np.testing.assert_allclose(est.train, train_prior, atol=1e-9)
    before = (posteriors.argmax(1) == y).mean()
    after = ((np.log(posteriors) + np.array(est.log_offsets)).argmax(1) == y).mean()
    best = (bayes_posteriors(x, scene_prior).argmax(1) == y).mean()  # the Bayes rule under the true priors
    assert after > before + 0.02
    assert after == pytest.approx(best, abs=0.005)


def test_unchanged_priors_give_near_zero_offsets():
    prior = np.array([0.5, 0.3, 0.2])
    x, _ = draw(prior, 40_000, seed=1)
    est = estimate_scene_priors(bayes_posteriors(x, prior), prior * 5_000)
    assert max(abs(v) for v in est.log_offsets) < 0.05


def test_a_class_with_few_training_pixels_is_left_alone():
    train_prior = np.array([0.45, 0.40, 0.15])
    x, _ = draw(np.array([0.7, 0.2, 0.1]), 20_000, seed=2)
    est = estimate_scene_priors(bayes_posteriors(x, train_prior), [4_500, 4_000, 41], min_train_pixels=200)
    assert est.adjusted == (True, True, False)
    assert est.log_offsets[2] == 0.0 and est.log_offsets[0] > 0 > est.log_offsets[1]


def test_the_guard_counts_distinct_pixels_not_chip_overlaps():
    """41 grassland pixels seen 1,791 times by overlapping chips are still 41 pixels (the Slovenia scene)."""
    x, _ = draw(np.array([0.7, 0.2, 0.1]), 5_000, seed=4)
    posteriors = bayes_posteriors(x, np.array([0.45, 0.40, 0.15]))
    seen = estimate_scene_priors(posteriors, [52_882, 1_791, 1_000], min_train_pixels=200)
    distinct = estimate_scene_priors(posteriors, [52_882, 1_791, 1_000], min_train_pixels=200,
                                     distinct_pixels=[2_975, 41, 300])
    assert seen.adjusted == (True, True, True) and distinct.adjusted == (True, False, True)


@pytest.mark.parametrize("counts", [[3_000, 41, 3, 2], [0, 3_000, 0, 0]])
def test_one_trusted_class_means_no_correction(counts):
    posteriors = np.full((100, 4), 0.25)
    est = estimate_scene_priors(posteriors, counts)
    assert not est.changes_anything and sum(est.adjusted) == 0
    assert est.train == pytest.approx(tuple(c / sum(counts) for c in counts))


def test_the_correction_is_bounded():
    """Posteriors that all say class 0: EM drives class 1's share to zero; its weight stops at 1/MAX_RATIO."""
    posteriors = np.tile([[0.999, 0.001]], (1_000, 1))
    est = estimate_scene_priors(posteriors, [1_000, 1_000])
    assert est.scene[1] < 1e-6
    assert est.log_offsets[1] == pytest.approx(-np.log(MAX_RATIO))
    assert est.log_offsets[0] == pytest.approx(np.log(2.0))  # 0.5 → 1.0: within the bound


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="do not match 3 training counts"):
        estimate_scene_priors(np.full((5, 2), 0.5), [1, 2, 3])


def test_record_names_the_classes():
    est = estimate_scene_priors(bayes_posteriors(draw(np.array([0.6, 0.3, 0.1]), 5_000, 3)[0],
                                                 np.array([1 / 3] * 3)), [1_000, 1_000, 1_000])
    record = est.to_dict(["forest", "deforestation", "water"])
    assert record["method"] == "em" and set(record["scene_share"]) == {"forest", "deforestation", "water"}
    assert record["sampled_pixels"] == 5_000


def test_calibrated_posteriors_find_a_known_mix_again():
    train_prior = np.array([0.45, 0.40, 0.15])
    x, y = draw(train_prior, 30_000, seed=5)  # held-out pixels drawn like the training ones
    held_out = bayes_posteriors(x, train_prior)
    scene_x, _ = draw(np.array([0.75, 0.19, 0.06]), 30_000, seed=6)
    estimate = estimate_scene_priors(bayes_posteriors(scene_x, train_prior), train_prior * 10_000)
    assert recovery_error(held_out, y, estimate, train_prior * 10_000) < 0.02


def test_soft_posteriors_of_a_weak_model_miss_it():
    """Posteriors flattened towards uniform (an under-trained network's): EM overshoots, and the check says so."""
    train_prior = np.array([0.45, 0.40, 0.15])
    x, y = draw(train_prior, 30_000, seed=7)
    soft = bayes_posteriors(x, train_prior) ** 0.3
    soft /= soft.sum(axis=1, keepdims=True)
    scene_x, _ = draw(np.array([0.75, 0.19, 0.06]), 30_000, seed=8)
    scene = bayes_posteriors(scene_x, train_prior) ** 0.3
    estimate = estimate_scene_priors(scene / scene.sum(axis=1, keepdims=True), train_prior * 10_000)
    assert recovery_error(soft, y, estimate, train_prior * 10_000) > 0.05


def test_no_check_without_held_out_pixels_of_every_adjusted_class():
    estimate = estimate_scene_priors(np.full((10, 3), 1 / 3), [1_000, 1_000, 1_000])
    assert recovery_error(np.full((4, 3), 1 / 3), np.array([0, 0, 1, 1]), estimate, [1_000, 1_000, 1_000]) is None
