"""The paper's evaluation metrics (section 3) as pure functions.

  balanced_accuracy(y_true, y_pred)              BCA, mean of per-class recalls
  swap_success_rate(outputs, target)             SR(+) (target 1), SR(-) (0)
  classifier_feature_distance(real, fake)        CFD, mean L2 distance
  feature_statistics(features) -> (mu, sigma)    for FID / Frechet distances
  frechet_distance(mu1, sigma1, mu2, sigma2)     FID's distance

The first three are jnp code (jit-able, any batch size); the Frechet distance
runs once per evaluation in float64 numpy, where the precision matters more
than speed (2048 x 2048 covariances of InceptionV3 features).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def balanced_accuracy(y_true, y_pred, num_classes: int = 2):
  """BCA: the mean over the classes present in y_true of the recall.

  y_true, y_pred: (N,) integer class indices. Classes absent from y_true
  are left out of the mean (their recall is undefined). Returns a scalar.
  """
  y_true = jnp.asarray(y_true)
  y_pred = jnp.asarray(y_pred)
  classes = jnp.arange(num_classes)
  is_class = y_true[None, :] == classes[:, None]                  # (K, N)
  support = is_class.sum(axis=1)
  hits = (is_class & (y_pred[None, :] == y_true[None, :])).sum(axis=1)
  recall = hits / jnp.maximum(support, 1)
  present = support > 0
  return jnp.sum(jnp.where(present, recall, 0.0)) / jnp.maximum(
      present.sum(), 1)


def swap_success_rate(outputs, target: int):
  """SR: share of fakes that the independent classifier puts in `target`.

  outputs: (N, K) logits or probabilities of the classifier on the fakes;
  target 1 for SR(+) (fake+ = D(z_0, c_1, y=1)), 0 for SR(-). Returns a
  scalar in [0, 1].
  """
  return jnp.mean(jnp.argmax(jnp.asarray(outputs), axis=-1) == target)


def classifier_feature_distance(real_outputs, fake_outputs):
  """CFD: mean L2 distance between the classifier's outputs on a real image
  and on the fake that carries the same y and c (paper 3).

  real_outputs, fake_outputs: (N, K), row i of one paired with row i of the
  other. This project feeds softmax probabilities (docs/evaluation.md).
  """
  diff = jnp.asarray(real_outputs) - jnp.asarray(fake_outputs)
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1)))


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError('feature_statistics needs (N, D) features with N >= 2, '
                     f'got shape {features.shape}.')
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (eigenvalues < 0 from
  round-off are clipped to 0)."""
  w, v = np.linalg.eigh((sigma + sigma.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):

    ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)).

  tr((s1 s2)^(1/2)) = tr((A s2 A)^(1/2)) with A = s1^(1/2) symmetric, so
  both square roots are of symmetric PSD matrices (eigh): real, no complex
  leftovers, and no ill-conditioned sqrtm of a non-symmetric product. The
  result is symmetric in its two arguments up to round-off and clipped at
  0. Shapes: mu (D,), sigma (D, D). Returns a Python float.
  """
  mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
  sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64))
                    for s in (sigma1, sigma2))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'Mismatched statistics: {mu1.shape} {sigma1.shape} vs '
                     f'{mu2.shape} {sigma2.shape}.')
  root1 = _psd_sqrt(sigma1)
  middle = root1 @ sigma2 @ root1
  eig = np.linalg.eigvalsh((middle + middle.T) / 2)
  tr_covmean = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
  diff = mu1 - mu2
  value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
  return float(max(value, 0.0))


def batched(fn, arrays, batch_size):
  """fn over fixed-size chunks (the last one padded), so that each jitted
  function compiles for one shape only; outputs trimmed to len(arrays[0])."""
  n = len(arrays[0])
  outs = []
  for i in range(0, n, batch_size):
    chunk = [a[i:i + batch_size] for a in arrays]
    pad = batch_size - len(chunk[0])
    if pad:
      chunk = [np.concatenate([c, np.repeat(c[-1:], pad, 0)]) for c in chunk]
    outs.append(jax.device_get(fn(*chunk)))
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)


def code_perplexity(z_index: jax.Array, num_codes: int) -> jax.Array:
  """exp(entropy) of the batch's code usage: how many codes are in use."""
  counts = jnp.bincount(z_index.reshape(-1), length=num_codes)
  p = counts / jnp.maximum(counts.sum(), 1)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(p), 0.0)))
