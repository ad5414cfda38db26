"""The sampling helpers of the models (models/sampling.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvqvae_jax.models import sampling


def test_gumbel_samples_follow_the_categorical():
  logits = jnp.log(jnp.array([0.6, 0.3, 0.1]))
  idx = jnp.argmax(logits + sampling.gumbel_noise(
      jax.random.key(2), (20000, 3)), -1)
  freq = np.bincount(np.asarray(idx), minlength=3) / 20000
  np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.015)


def test_gaussian_samples_have_the_mean_and_variance_and_their_gradient():
  mean, log_var = jnp.array([1.0, -2.0]), jnp.log(jnp.array([4.0, 0.25]))
  many = sampling.gaussian_sample(jax.random.key(0), mean, log_var,
                                  (20000, 2))
  np.testing.assert_allclose(many.mean(0), mean, atol=0.05)
  np.testing.assert_allclose(many.std(0), [2.0, 0.5], rtol=0.03)
  # One sample: d/d mean = 1, d/d log_var = eps sigma / 2.
  one = lambda m, v: sampling.gaussian_sample(jax.random.key(1), m, v).sum()
  eps = jax.random.normal(jax.random.key(1), (2,))
  d_mean, d_log_var = jax.grad(one, argnums=(0, 1))(mean, log_var)
  np.testing.assert_allclose(d_mean, [1.0, 1.0])
  np.testing.assert_allclose(d_log_var, eps * jnp.exp(0.5 * log_var) / 2,
                             rtol=1e-6)


def test_copy_straight_through_passes_gradient_to_z_e():
  z_e = jnp.array([0.2, -0.4, 1.0])
  code = jnp.array([0.0, 0.0, 0.5])
  z_q = sampling.straight_through(code, z_e)
  np.testing.assert_array_equal(z_q, code)
  grad = jax.grad(lambda z: jnp.sum(sampling.straight_through(code, z) *
                                    jnp.array([1.0, 2.0, 3.0])))(z_e)
  np.testing.assert_array_equal(grad, [1.0, 2.0, 3.0])


def test_semi_supervised_labels_known_are_one_hot_unknown_are_relaxed():
  logits = jnp.zeros((4, 2, 2))
  labels = jnp.array([[1, 0], [0, 1], [1, 1], [0, 0]])
  labelled = jnp.array([[True, True], [True, False], [False, False],
                        [False, True]])
  y = sampling.semi_supervised_labels(jax.random.key(3), logits, labels,
                                        labelled, 1.0)
  np.testing.assert_array_equal(y[labelled], jax.nn.one_hot(labels, 2)[labelled])
  soft = y[~labelled]
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  assert np.all((soft > 0) & (soft < 1))


def test_temperature_schedule_is_geometric_between_endpoints():
  sched = lambda s: float(sampling.temperature_schedule(s, 1.0, 0.25, 100))
  assert sched(0) == 1.0
  np.testing.assert_allclose(sched(50), 0.5, rtol=1e-6)
  np.testing.assert_allclose(sched(100), 0.25, rtol=1e-6)
  np.testing.assert_allclose(sched(1000), 0.25, rtol=1e-6)
  assert float(sampling.temperature_schedule(10, 0.7, 0.7, 100)) == \
      pytest.approx(0.7)
