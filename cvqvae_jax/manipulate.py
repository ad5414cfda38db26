"""Encoding, decoding and label swaps as pure functions of (model, params).

These take images and return images (or codes), so research code can use a
trained model without the training loop:

  codes = encode(model, params, x, labels)        # y, c, z_q of each image
  fake = decode(model, params, swap_label(codes_a, codes_b, 0))

Shapes: x (B, S, S, C); labels (B, L) int or None (then y = argmax q(y|x)).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

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


def swap_label(base: Codes, donor: Codes, label: int) -> Codes:
  """Codes of `base` with label `label`'s y and c taken from `donor`.

  With base = x_{y=0} and donor = x_{y=1} this is the paper's fake+
  (z_0, c_1, y = 1); the other way round it is fake- (z_1, c_0, y = 0).
  """
  y = base['y'].at[:, label].set(donor['y'][:, label])
  c = tuple(donor['c'][i] if i == label else c_i
            for i, c_i in enumerate(base['c']))
  return {**base, 'y': y, 'c': c}


def swap(model, params, x_base: jax.Array, x_donor: jax.Array, label: int,
         labels_base: jax.Array | None = None,
         labels_donor: jax.Array | None = None) -> jax.Array:
  """x_base with the label and features of x_donor for label index `label`."""
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
