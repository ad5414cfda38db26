"""The objective's pure functions against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvqvae_jax import objectives


def test_kl_to_uniform_matches_hand_computed_value():
  p = np.array([0.5, 0.25, 0.25])
  entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
  expected = math.log(3) - entropy  # = 0.05889...
  kl = objectives.categorical_kl_to_uniform(jnp.log(jnp.asarray(p)) + 7.0)
  np.testing.assert_allclose(kl, expected, rtol=1e-6)
  np.testing.assert_allclose(expected, 0.0588915, atol=1e-6)


def test_kl_bounds_uniform_and_one_hot():
  k = 512
  assert float(objectives.categorical_kl_to_uniform(jnp.zeros(k))) == 0.0
  one_hot = jnp.full((k,), -jnp.inf).at[3].set(0.0)
  np.testing.assert_allclose(objectives.categorical_kl_to_uniform(one_hot),
                             math.log(k), rtol=1e-6)


@pytest.mark.parametrize('logits', [
    [1e30, -1e30, 0.0],
    [-1e38, -1e38, 3e38],
    [0.0, -np.inf, -np.inf],
    [1e4, 1e4, -1e4],
])
def test_kl_is_finite_for_extreme_logits_with_finite_gradient(logits):
  logits = jnp.asarray(logits, jnp.float32)
  kl = objectives.categorical_kl_to_uniform(logits)
  assert np.isfinite(kl) and 0.0 <= kl <= math.log(3) + 1e-6
  grad = jax.grad(objectives.categorical_kl_to_uniform)(logits)
  assert np.all(np.isfinite(grad))


def test_kl_shapes_last_axis_is_k():
  logits = jax.random.normal(jax.random.key(0), (2, 8, 8, 16)) * 3
  kl = objectives.categorical_kl_to_uniform(logits)
  assert kl.shape == (2, 8, 8)
  # Batch reduction of the loss: sum over positions, mean over the batch.
  np.testing.assert_allclose(objectives.categorical_kl_loss(logits),
                             kl.reshape(2, -1).sum(-1).mean(), rtol=1e-6)


def test_classification_loss_averages_over_labelled_examples_only():
  logits = jnp.log(jnp.array([[[0.8, 0.2]], [[0.4, 0.6]], [[0.5, 0.5]]]))
  labels = jnp.array([[0], [0], [1]])
  labelled = jnp.array([[True], [True], [False]])
  expected = -(math.log(0.8) + math.log(0.4)) / 2
  np.testing.assert_allclose(
      objectives.classification_loss(logits, labels, labelled), expected,
      rtol=1e-6)
  assert float(objectives.classification_loss(logits, labels,
                                               labelled & False)) == 0.0


def test_codebook_and_commitment_gradients_go_to_one_side_each():
  z_e = jnp.array([[1.0, 2.0]])
  code = jnp.array([[0.0, 0.0]])
  cb, cm = objectives.codebook_losses(z_e, code)
  np.testing.assert_allclose([cb, cm], [2.5, 2.5])
  g_cb = jax.grad(lambda z, e: objectives.codebook_losses(z, e)[0],
                  argnums=(0, 1))(z_e, code)
  g_cm = jax.grad(lambda z, e: objectives.codebook_losses(z, e)[1],
                  argnums=(0, 1))(z_e, code)
  np.testing.assert_array_equal(g_cb[0], 0.0)
  np.testing.assert_allclose(g_cb[1], [[-1.0, -2.0]])
  np.testing.assert_allclose(g_cm[0], [[1.0, 2.0]])
  np.testing.assert_array_equal(g_cm[1], 0.0)


def test_gaussian_kl_matches_closed_form():
  mean, log_var = jnp.array([1.0, 0.0]), jnp.array([0.0, math.log(4.0)])
  expected = 0.5 * (1.0 + 0.0) + 0.5 * (4.0 - 1.0 - math.log(4.0))
  np.testing.assert_allclose(objectives.gaussian_kl_to_standard(mean, log_var),
                             expected, rtol=1e-6)


class _Weights:  # config.objective's three weights
  beta, alpha, commitment = 0.1, 2.0, 0.25


def test_weighted_loss_is_eq6_plus_the_three_terms():
  terms = {'reconstruction': jnp.float32(1.0), 'kl': jnp.float32(10.0),
           'classification': jnp.float32(0.5), 'codebook': jnp.float32(0.3),
           'commitment': jnp.float32(0.4)}
  # 1 + 0.1 * 10 + 2 * 0.5 + 0.3 + 0.25 * 0.4
  np.testing.assert_allclose(objectives.weighted_loss(terms, _Weights), 3.4,
                             rtol=1e-6)
  # A model without a codebook (the Gaussian ones): those terms count 0.
  del terms['codebook'], terms['commitment']
  np.testing.assert_allclose(objectives.weighted_loss(terms, _Weights), 3.0,
                             rtol=1e-6)


def test_shared_terms_of_a_hand_made_batch():
  x = jnp.zeros((2, 2, 2, 1))
  x_hat = x.at[0].set(1.0)  # squared error 1 on half of the pixels
  logits = jnp.log(jnp.array([[[0.8, 0.2]], [[0.4, 0.6]]]))
  batch = {'image': x, 'label': jnp.array([[0], [1]]),
           'labelled': jnp.array([[True], [False]])}
  terms = objectives.shared_terms(batch, {'x_hat': x_hat, 'logits_y': logits})
  np.testing.assert_allclose(terms['reconstruction'], 0.5, rtol=1e-6)
  np.testing.assert_allclose(terms['classification'], -math.log(0.8),
                             rtol=1e-6)


def test_constant_kl_of_the_one_hot_posterior():
  # VQ-VAE's one-hot q has KL log K at each position, as the general formula
  # gives for one-hot logits.
  one_hot = jnp.full((1, 4, 4, 16), -jnp.inf).at[..., 3].set(0.0)
  np.testing.assert_allclose(objectives.constant_categorical_kl(16, 16),
                             objectives.categorical_kl_loss(one_hot),
                             rtol=1e-6)
  np.testing.assert_allclose(objectives.constant_categorical_kl(16, 16),
                             16 * math.log(16), rtol=1e-6)
