"""The CVQVAE objective as pure, jit-friendly functions (paper 2.2-2.3).

    L = MSE(x, D(y, z, c))
        + beta  * sum_ij KL(q(z_ij | x, y) || Uniform(K))
        + alpha * CE(q(y | x), y_true)                 (labelled examples only)
        + ||sg[z_e] - z_q||^2 + 0.25 ||z_e - sg[z_q]||^2

Reductions follow the authors' JDVAE code (docs/model.md, "Objective"): the squared
error is averaged over every pixel and channel, the KL is summed over latent
positions and averaged over the batch, the classification term is averaged over
the labelled examples, and the codebook/commitment terms are element means.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

STRAIGHT_THROUGH_MODES = ('copy', 'gumbel')


def categorical_kl_to_uniform(logits: jax.Array) -> jax.Array:
  """KL(softmax(logits) || Uniform(K)) = log K - H, per position.

  logits: (..., K). Returns (...). Computed from log_softmax, and terms with
  zero probability contribute exactly 0, so the value is finite for any finite
  or -inf logits.
  """
  num_classes = logits.shape[-1]
  log_p = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(log_p)
  # p * log p -> 0 as p -> 0; the inner where keeps 0 * -inf out of both
  # the value and the gradient.
  neg_entropy = jnp.sum(p * jnp.where(p > 0, log_p, 0.0), axis=-1)
  return jnp.maximum(math.log(num_classes) + neg_entropy, 0.0)


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


def classification_loss(logits_y: jax.Array, labels: jax.Array,
                        labelled: jax.Array) -> jax.Array:
  """-log q(y|x) averaged over the labelled examples, summed over labels.

  logits_y: (B, L, 2); labels: (B, L); labelled: (B, L) bool. A label with no
  labelled example in the batch contributes 0.
  """
  log_q = jax.nn.log_softmax(logits_y, axis=-1)
  nll = -jnp.take_along_axis(log_q, labels[..., None].astype(jnp.int32),
                             axis=-1)[..., 0]
  mask = labelled.astype(nll.dtype)
  per_label = jnp.sum(nll * mask, axis=0) / jnp.maximum(mask.sum(axis=0), 1.0)
  return jnp.sum(per_label)


def reconstruction_loss(x: jax.Array, x_hat: jax.Array) -> jax.Array:
  """Squared error averaged over every pixel and channel (F.mse_loss)."""
  return jnp.mean(jnp.square(x - x_hat))


def kl_loss(z_logits: jax.Array) -> jax.Array:
  """Entropy KL summed over latent positions, averaged over the batch.

  z_logits: (B, N_z, N_z, K) logits of q(z_ij | x, y).
  """
  kl = categorical_kl_to_uniform(z_logits)
  return jnp.mean(jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1))


def codebook_losses(z_e: jax.Array,
                    z_code: jax.Array) -> tuple[jax.Array, jax.Array]:
  """VQ-VAE terms: (||sg[z_e] - e||^2, ||z_e - sg[e]||^2), element means.

  z_e: encoder output; z_code: the selected codebook vectors, same shape.
  """
  sg = jax.lax.stop_gradient
  codebook = jnp.mean(jnp.square(sg(z_e) - z_code))
  commitment = jnp.mean(jnp.square(z_e - sg(z_code)))
  return codebook, commitment


def code_perplexity(z_index: jax.Array, num_codes: int) -> jax.Array:
  """exp(entropy) of the batch's code usage: how many codes are in use."""
  counts = jnp.bincount(z_index.reshape(-1), length=num_codes)
  p = counts / jnp.maximum(counts.sum(), 1)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(p), 0.0)))


def gaussian_kl_to_standard(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """KL(N(mean, exp(log_var)) || N(0, I)) summed over the last axis."""
  return -0.5 * jnp.sum(1 + log_var - jnp.square(mean) - jnp.exp(log_var),
                        axis=-1)


def temperature_schedule(step: jax.Array, start: float, end: float,
                         anneal_steps: int) -> jax.Array:
  """Geometric annealing from `start` to `end` over `anneal_steps` steps.

  With anneal_steps <= 0 or start == end the temperature is constant.
  """
  if anneal_steps <= 0 or start == end:
    return jnp.asarray(start, jnp.float32)
  frac = jnp.clip(step / anneal_steps, 0.0, 1.0)
  return jnp.asarray(start * (end / start) ** frac, jnp.float32)
