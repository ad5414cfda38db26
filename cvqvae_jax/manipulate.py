"""Encoding, decoding and label swaps as pure functions of (model, params).

These take images and return images (or codes), so research code can use a
trained model without the training loop:

  codes = encode(model, params, x, labels)        # y, c, z_q of each image
  fake = decode(model, params, swap_label(codes_a, codes_b, 0))

Shapes: x (B, S, S, C); labels (B, L) int or None (then y = argmax q(y|x)).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from cvqvae_jax import xla_options
Codes = dict[str, Any]  # {'y': (B, L, 2), 'c': tuple of (B, n_l), 'z_q': ...}


def encode(model, params, x: jax.Array,
           labels: jax.Array | None = None) -> Codes:
  """y (true labels when given, else the most likely), c, and the most likely
  codes z (paper 2.1, test time)."""
  variables = {'params': params}
  logits_y, c = model.apply(variables, x, method='classify')
  if labels is None:
    labels = jnp.argmax(logits_y, axis=-1)
  y = jax.nn.one_hot(labels, 2, dtype=x.dtype)
  z_index, z_q = model.apply(variables, x, y, method='encode')
  return {'y': y, 'c': tuple(c), 'z_q': z_q, 'z_index': z_index,
          'logits_y': logits_y}


def decode(model, params, codes: Codes) -> jax.Array:
  """D_theta(z_q, y, f(y, c)) -> images (B, S, S, C) in [-1, 1]."""
  return model.apply({'params': params}, codes['z_q'], codes['y'],
                     codes['c'], method='decode')


def swap_label(base: Codes, donor: Codes, label: int | Sequence[int]
               ) -> Codes:
  """Codes of `base` with the y and c of label `label` (an index, or several
  indices: paper Fig. 8) taken from `donor`.

  With base = x_{y=0} and donor = x_{y=1} this is the paper's fake+
  (z_0, c_1, y = 1); the other way round it is fake- (z_1, c_0, y = 0).
  """
  moved = {label} if isinstance(label, int) else set(label)
  y = base['y']
  for l in sorted(moved):
    y = y.at[:, l].set(donor['y'][:, l])
  c = tuple(donor['c'][i] if i in moved else c_i
            for i, c_i in enumerate(base['c']))
  return {**base, 'y': y, 'c': c}


def swap(model, params, x_base: jax.Array, x_donor: jax.Array,
         label: int | Sequence[int], labels_base: jax.Array | None = None,
         labels_donor: jax.Array | None = None) -> jax.Array:
  """x_base with the label(s) and features of x_donor for the label index
  `label` (or several indices at once)."""
  base = encode(model, params, x_base, labels_base)
  donor = encode(model, params, x_donor, labels_donor)
  return decode(model, params, swap_label(base, donor, label))


def set_label(codes: Codes, label: int, value) -> Codes:
  """Codes with y of label `label` set to `value` (0 or 1) for every image."""
  y = codes['y'].at[:, label].set(jax.nn.one_hot(value, 2,
                                                 dtype=codes['y'].dtype))
  return {**codes, 'y': y}


def _with_features(codes: Codes, label: int, c_label) -> Codes:
  c = tuple(c_label if i == label else c_i
            for i, c_i in enumerate(codes['c']))
  return {**codes, 'c': c}


def interpolate_features(model, params, x1: jax.Array, x2: jax.Array,
                         label: int, alphas, labels1=None,
                         labels2=None) -> jax.Array:
  """Paper Fig. 6: D(z_1, y_1, c_1 + alpha (c_2 - c_1)) for each alpha.

  x1, x2: (B, S, S, C), pairs with the same y of `label`; alphas: (A,).
  Returns (A, B, S, S, C): the face of x1 with features moving to x2's.
  """
  codes1 = encode(model, params, x1, labels1)
  codes2 = encode(model, params, x2, labels2)
  c1, c2 = codes1['c'][label], codes2['c'][label]
  return jnp.stack([
      decode(model, params, _with_features(codes1, label, c1 + a * (c2 - c1)))
      for a in jnp.asarray(alphas)])


def scale_features(model, params, x: jax.Array, label: int, lambdas,
                   labels=None) -> jax.Array:
  """Paper Fig. 7: D(z, y, lambda c) for each lambda; (L, B, S, S, C)."""
  codes = encode(model, params, x, labels)
  c = codes['c'][label]
  return jnp.stack([decode(model, params, _with_features(codes, label, s * c))
                    for s in jnp.asarray(lambdas)])


def difference_map(model, params, x: jax.Array, label: int,
                   labels=None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Paper Fig. 5: what label `label` changes in x.

  The reconstruction D(z, y, c) against the reconstruction with y = 0 (the
  "pathology-free" image), same z and c. Returns (reconstruction,
  reconstruction with y = 0, per-pixel mean absolute difference (B, S, S)).
  """
  codes = encode(model, params, x, labels)
  recon = decode(model, params, codes)
  without = decode(model, params, set_label(codes, label, 0))
  return recon, without, jnp.mean(jnp.abs(recon - without), axis=-1)


@functools.lru_cache(maxsize=16)
def jitted(model) -> dict[str, Any]:
  """The functions above for `model`, each jitted once per process: Codecs
  of equal models (the same config) share them, so each compiles once per
  shape, whoever calls it (the curves, the final evaluation, previews,
  figures, cvqvae_jax.load)."""
  jit = lambda f, **kw: xla_options.jit(functools.partial(f, model), **kw)
  return {
      'encode': jit(encode),
      'decode': jit(decode),
      '_swap': jit(swap, static_argnames=('label',)),
      '_interpolate': jit(interpolate_features, static_argnames=('label',)),
      '_scale': jit(scale_features, static_argnames=('label',)),
      '_difference': jit(difference_map, static_argnames=('label',)),
      '_set_label': xla_options.jit(
          lambda params, x, labels, label, value: decode(
              model, params, set_label(encode(model, params, x, labels),
                                       label, value)),
          static_argnames=('label', 'value')),
  }


class Codec:
  """The functions above for one model, jitted (`jitted`): what evaluation,
  the pictures (previews.py, figures.py) and user code call.

    codec = Codec(model)
    fake = codec.swap(params, x0, x1, labels0, labels1, label=0)

  Label indices (`label`) are static: one compilation per index.
  """

  def __init__(self, model):
    self.model = model
    for name, fn in jitted(model).items():
      setattr(self, name, fn)

  def reconstruct(self, params, x, labels=None):
    """D(z, y, f(y, c)) of x's own most likely codes."""
    return self.decode(params, self.encode(params, x, labels))

  def swap(self, params, x_base, x_donor, labels_base, labels_donor,
           label: int | Sequence[int]):
    """See swap(); `label` may be several indices (moved at once)."""
    label = label if isinstance(label, int) else tuple(label)
    return self._swap(params, x_base, x_donor, labels_base=labels_base,
                      labels_donor=labels_donor, label=label)

  def set_label(self, params, x, labels, label: int, value: int):
    """x decoded with y of `label` set to `value`, z and c its own."""
    return self._set_label(params, x, labels, label=label, value=int(value))

  def interpolate(self, params, x1, x2, label: int, alphas, labels1=None,
                  labels2=None):
    """See interpolate_features()."""
    return self._interpolate(params, x1, x2, alphas=alphas, labels1=labels1,
                             labels2=labels2, label=label)

  def scale(self, params, x, label: int, lambdas, labels=None):
    """See scale_features()."""
    return self._scale(params, x, lambdas=lambdas, labels=labels, label=label)

  def difference(self, params, x, label: int, labels=None):
    """See difference_map()."""
    return self._difference(params, x, labels=labels, label=label)
