"""Sampling: the y fed to the tokens and f(y, c) during training, the
relaxed and straight-through samples of the models (Gumbel), the Gaussian
models' reparameterised samples, and the temperatures of the relaxations
(paper 2.3; docs/model.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Gradient path through CVQVAE's z sample (docs/model.md).
STRAIGHT_THROUGH_MODES = ('copy', 'gumbel')


def gumbel_noise(rng: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """Standard Gumbel(0, 1) samples, bounded away from the tails."""
  u = jax.random.uniform(rng, shape, dtype, minval=jnp.finfo(dtype).tiny,
                         maxval=1.0)
  return -jnp.log(-jnp.log(u))


def gumbel_softmax(rng: jax.Array, logits: jax.Array,
                   temperature: jax.Array | float) -> jax.Array:
  """Relaxed one-hot sample softmax((logits + g) / tau), shape of logits."""
  g = gumbel_noise(rng, logits.shape, logits.dtype)
  return jax.nn.softmax((logits + g) / temperature, axis=-1)


def straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
  """Forward value `hard`, gradient of `soft` (Bengio et al. 2013)."""
  return soft + jax.lax.stop_gradient(hard - soft)


def semi_supervised_labels(
    rng: jax.Array, logits_y: jax.Array, labels: jax.Array,
    labelled: jax.Array, temperature: jax.Array | float) -> jax.Array:
  """y fed to the tokens and to f(y, c) during training (paper 2.1, 2.3).

  logits_y: (B, L, 2); labels: (B, L) int; labelled: (B, L) bool.
  Known labels give their one-hot value; unknown ones a Gumbel-softmax
  relaxed sample of q(y|x). Returns (B, L, 2).
  """
  relaxed = gumbel_softmax(rng, logits_y, temperature)
  known = jax.nn.one_hot(labels, 2, dtype=relaxed.dtype)
  return jnp.where(labelled[..., None], known, relaxed)


def gaussian_sample(rng: jax.Array, mean: jax.Array, log_var: jax.Array,
                    shape=None) -> jax.Array:
  """mean + sigma * eps, eps ~ N(0, I), sigma = exp(log_var / 2): a sample
  of N(mean, diag(sigma^2)) that carries the gradient of both (the
  reparameterisation trick). shape: of eps, default mean's; a leading
  extra axis draws that many samples."""
  eps = jax.random.normal(rng, mean.shape if shape is None else shape,
                          mean.dtype)
  return mean + jnp.exp(0.5 * log_var) * eps


def temperature_schedule(step: jax.Array, start: float, end: float,
                         anneal_steps: int) -> jax.Array:
  """Geometric annealing from `start` to `end` over `anneal_steps` steps.

  With anneal_steps <= 0 or start == end the temperature is constant.
  """
  if anneal_steps <= 0 or start == end:
    return jnp.asarray(start, jnp.float32)
  frac = jnp.clip(step / anneal_steps, 0.0, 1.0)
  return jnp.asarray(start * (end / start) ** frac, jnp.float32)
