"""Building blocks shared by every model: residual blocks, label tokens, AdaIN
and the feature combination f(y, c) (paper section 2.1)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The feature kinds of a label: how f(y, c) combines y and c.
FEATURE_KINDS = ('presence', 'both')
# config.dtype -> the computation dtype of the convolutional networks.
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str):
  """The jnp dtype named by config.dtype ('float32' or 'bfloat16')."""
  if name not in DTYPES:
    raise ValueError(f'Unknown dtype {name!r}; expected one of '
                     f'{tuple(DTYPES)}.')
  return DTYPES[name]


def leaky_relu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, negative_slope=0.2)


def avg_pool2(x: jax.Array) -> jax.Array:
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def upsample2(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling of a (B, H, W, C) map."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def num_resamplings(image_size: int, target: int, what: str) -> int:
  """How many x2 resamplings take `image_size` to `target` (both powers of 2)."""
  ratio = image_size // max(target, 1)
  if target <= 0 or image_size % target or ratio & (ratio - 1):
    raise ValueError(
        f'{what}: image size {image_size} is not a power-of-two multiple of '
        f'{target}.')
  return int(math.log2(ratio))


class AdaIN(nn.Module):
  """Adaptive instance norm (JDVAE): (1 + gamma(s)) * IN(x) + beta(s).

  The statistics are taken in float32 whatever the dtype of x; the result
  has `dtype`.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=(1, 2), keepdims=True)
    var = x32.var(axis=(1, 2), keepdims=True)
    x = ((x32 - mean) * jax.lax.rsqrt(var + 1e-5)).astype(self.dtype)
    gamma, beta = jnp.split(
        nn.Dense(2 * x.shape[-1], dtype=self.dtype)(style), 2, axis=-1)
    return (1 + gamma[:, None, None, :]) * x + beta[:, None, None, :]


class FiLM(nn.Module):
  """Feature-wise modulation (Perez et al. 2018): (1 + gamma(f)) * h + beta(f)
  with gamma, beta a dense map of the vector f, initialised to zero so that
  the block starts as the identity."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, f: jax.Array) -> jax.Array:
    gamma, beta = jnp.split(
        nn.Dense(2 * h.shape[-1], dtype=self.dtype,
                 kernel_init=nn.initializers.zeros)(f), 2, axis=-1)
    return ((1 + gamma[:, None, None, :]) * h
            + beta[:, None, None, :]).astype(h.dtype)


class ResBlock(nn.Module):
  """Pre-activation residual block of JDVAE / StarGAN-v2 (no normalisation).

  resample: 'down' average-pools by 2 after the first conv; 'up' resizes
  (nearest, x2) first; 'none' keeps the resolution. With a `style` vector the
  activations are preceded by AdaIN (CGVAE's decoder, paper 2.4).
  Output = (shortcut + residual) / sqrt(2). The convolutions compute in
  `dtype` (bfloat16 for mixed precision); their parameters stay float32.
  """
  features: int
  resample: str = 'none'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, style: jax.Array | None = None) -> jax.Array:
    if self.resample not in ('down', 'up', 'none'):
      raise ValueError(f'resample must be down, up or none: {self.resample!r}')
    x = x.astype(self.dtype)
    in_features = x.shape[-1]
    norm = (lambda h, name: h) if style is None else (
        lambda h, name: AdaIN(self.dtype, name=name)(h, style))

    h = leaky_relu(norm(x, 'adain_1'))
    if self.resample == 'up':
      h = upsample2(h)
      h = nn.Conv(self.features, (3, 3), dtype=self.dtype, name='conv_1')(h)
    else:
      h = nn.Conv(in_features, (3, 3), dtype=self.dtype, name='conv_1')(h)
      if self.resample == 'down':
        h = avg_pool2(h)
    h = leaky_relu(norm(h, 'adain_2'))
    h = nn.Conv(self.features, (3, 3), dtype=self.dtype, name='conv_2')(h)

    shortcut = x
    if self.resample == 'up':
      shortcut = upsample2(shortcut)
    if in_features != self.features:
      shortcut = nn.Conv(self.features, (1, 1), use_bias=False,
                         dtype=self.dtype, name='shortcut')(shortcut)
    if self.resample == 'down':
      shortcut = avg_pool2(shortcut)
    return (shortcut + h) / math.sqrt(2.0)


class LabelTokens(nn.Module):
  """Learnable tokens selected by the value of each label (paper 2.1).

  Holds a table of shape (L, 2, *shape): for every label and every value of it
  one token (a single-channel image of `shape`, or a scalar when shape is ()).
  Given y of shape (B, L, 2) (one-hot, or a relaxed sample), returns the
  y-weighted mixture: (B, *shape, L), one channel per label.
  """
  shape: Sequence[int] = ()

  @nn.compact
  def __call__(self, y: jax.Array) -> jax.Array:
    table = self.param('table', nn.initializers.normal(1.0),
                       (y.shape[1], 2, *self.shape))
    return jnp.einsum('blv,lv...->b...l', y.astype(table.dtype), table)


def combine_features(y1: jax.Array, c: jax.Array, kind: str) -> jax.Array:
  """f(y, c) for one label (paper 2.1, last paragraph).

  y1: (B,) probability (or indicator) of y = 1; c: (B, n).
  'presence': f = y * c (null when y = 0); 'both': c = [c0, c1] and
  f = [(1 - y) c0, y c1].
  """
  y1 = y1[:, None].astype(c.dtype)
  if kind == 'presence':
    return y1 * c
  if kind == 'both':
    c0, c1 = jnp.split(c, 2, axis=-1)
    return jnp.concatenate([(1 - y1) * c0, y1 * c1], axis=-1)
  raise ValueError(
      f'Unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}.')


def feature_size(kind: str, num_features: int) -> int:
  """Size of c for one label: N_c for 'presence', 2 N_c for 'both'."""
  if kind not in FEATURE_KINDS:
    raise ValueError(f'Unknown feature kind {kind!r}; expected one of '
                     f'{FEATURE_KINDS}.')
  return 2 * num_features if kind == 'both' else num_features


class LabelAdversary(nn.Module):
  """An MLP that predicts the labels from a latent: (B, ...) -> (B, L, 2).

  The adversary of an invariance penalty (docs/model.md, "Extensions"): it
  is fitted to predict y from z, and the encoder is trained to leave it
  uncertain, through `frozen(adversary)` (its parameters held fixed).
  """
  width: int
  num_labels: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z.reshape(z.shape[0], -1).astype(jnp.float32)
    h = leaky_relu(nn.Dense(self.width, name='hidden')(h))
    return nn.Dense(2 * self.num_labels, name='out')(h).reshape(
        -1, self.num_labels, 2)


def frozen(module: nn.Module):
  """`module` (a bound submodule that has run in this pass) as a function of
  its inputs with its parameters held fixed: what it computes from its
  inputs still carries their gradient, its own parameters get none."""
  params = jax.tree.map(jax.lax.stop_gradient, module.variables['params'])
  unbound = module.clone(parent=None)
  return lambda *args, **kwargs: unbound.apply({'params': params}, *args,
                                               **kwargs)
