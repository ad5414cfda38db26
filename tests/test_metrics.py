"""The metrics of paper section 3 against hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvqvae_jax import metrics


def test_balanced_accuracy_is_the_mean_of_per_class_recalls():
  y_true = np.array([0, 0, 0, 0, 1, 1])
  y_pred = np.array([0, 0, 0, 1, 1, 0])
  # Recall of 0: 3/4, of 1: 1/2 -> 0.625 (plain accuracy would be 4/6).
  assert float(metrics.balanced_accuracy(y_true, y_pred)) == pytest.approx(
      0.625)
  assert float(metrics.balanced_accuracy(y_true, y_true)) == 1.0
  # A class absent from y_true is not averaged in.
  assert float(metrics.balanced_accuracy(np.ones(4, int),
                                         np.array([1, 1, 0, 1]))) == 0.75
  jitted = jax.jit(metrics.balanced_accuracy)(y_true, y_pred)
  assert float(jitted) == pytest.approx(0.625)


def test_swap_success_rate_counts_fakes_classified_as_target():
  outputs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
  assert float(metrics.swap_success_rate(outputs, 1)) == 0.75
  assert float(metrics.swap_success_rate(outputs, 0)) == 0.25
  perfect = np.array([[0.0, 1.0]] * 5)
  assert float(metrics.swap_success_rate(perfect, 1)) == 1.0


def test_classifier_feature_distance_is_the_mean_l2_distance():
  real = np.array([[1.0, 0.0], [0.5, 0.5]])
  fake = np.array([[0.0, 1.0], [0.5, 0.5]])
  # sqrt(2) and 0.
  assert float(metrics.classifier_feature_distance(real, fake)) == (
      pytest.approx(np.sqrt(2) / 2))
  assert float(metrics.classifier_feature_distance(real, real)) == 0.0


def test_frechet_distance_of_hand_computed_gaussians():
  # 1-D: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2) = (m1-m2)^2 + (sd1 - sd2)^2.
  assert metrics.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == (
      pytest.approx(4.0 + 1.0))
  # Diagonal: sum over dimensions.
  d = metrics.frechet_distance(np.zeros(2), np.diag([1.0, 4.0]),
                               np.ones(2), np.diag([4.0, 16.0]))
  assert d == pytest.approx(2.0 + 1.0 + 4.0)


def test_frechet_distance_is_zero_for_identical_and_symmetric():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(500, 64))
  b = rng.normal(size=(500, 64)) @ rng.normal(size=(64, 64)) * 0.3 + 1.0
  mu_a, s_a = metrics.feature_statistics(a)
  mu_b, s_b = metrics.feature_statistics(b)
  assert metrics.frechet_distance(mu_a, s_a, mu_a, s_a) == pytest.approx(
      0.0, abs=1e-8)
  ab = metrics.frechet_distance(mu_a, s_a, mu_b, s_b)
  ba = metrics.frechet_distance(mu_b, s_b, mu_a, s_a)
  assert isinstance(ab, float) and ab > 0
  assert ab == pytest.approx(ba, rel=1e-9)
  # Singular covariances (fewer samples than dimensions) stay finite, real.
  few = rng.normal(size=(10, 64))
  mu_f, s_f = metrics.feature_statistics(few)
  value = metrics.frechet_distance(mu_f, s_f, mu_a, s_a)
  assert np.isfinite(value) and value > 0
  assert metrics.frechet_distance(mu_f, s_f, mu_f, s_f) == pytest.approx(
      0.0, abs=1e-6)


def test_oracle_error_of_the_ideal_render_is_zero():
  from cvqvae_jax import evaluation  # pylint: disable=g-import-not-at-top
  from cvqvae_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  batch = next(iter(pipeline.create_eval_dataset(config, 'test',
                                                 batch_size=16)))
  pairs = evaluation.swap_pairs(batch['label'], 0, 6, seed=0)
  assert pairs is not None
  i0, i1 = pairs
  assert (batch['label'][i0, 0] == 0).all() and (batch['label'][i1, 0] == 1
                                                 ).all()
  ideal_plus = evaluation.ideal_swaps(batch['factors'], i0, i1, 'glasses', 16)
  ideal_minus = evaluation.ideal_swaps(batch['factors'], i1, i0, 'glasses',
                                       16)
  errors = evaluation.oracle_errors(batch, 'glasses', i0, i1, ideal_plus,
                                    ideal_minus)
  assert errors['oracle_swap_mse_plus'] == 0.0
  assert errors['oracle_swap_mse_minus'] == 0.0
  # Doing nothing is not the ideal swap.
  assert errors['oracle_identity_mse_plus'] > 1e-3
  assert errors['oracle_identity_mse_minus'] > 1e-3


def test_code_perplexity_counts_codes_in_use():
  np.testing.assert_allclose(
      metrics.code_perplexity(jnp.array([0, 1, 2, 3]), 16), 4.0, rtol=1e-5)
  np.testing.assert_allclose(
      metrics.code_perplexity(jnp.array([5, 5, 5]), 16), 1.0, rtol=1e-6)
