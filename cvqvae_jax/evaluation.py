"""Held-out evaluation after training: accuracy of argmax q(y|x) per label,
reconstruction error, and, on the procedural benchmark, the exact swap error
against the ideally rendered swap (DESIGN.md section 7)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cvqvae_jax import manipulate
from cvqvae_jax.data import pipeline
from cvqvae_jax.data import procedural


def eval_step(params, batch, *, model):
  """Per-example predictions and squared reconstruction error."""
  out = model.apply({'params': params}, batch['image'], batch['label'],
                    batch['labelled'], train=False)
  return {'pred': jnp.argmax(out['logits_y'], -1),
          'sq_err': jnp.mean(jnp.square(out['x_hat'] - batch['image']),
                             axis=(1, 2, 3))}


def _collect(config, limit: int) -> dict[str, np.ndarray]:
  """The first `limit` test examples, batched arrays concatenated."""
  parts = []
  for batch in pipeline.create_eval_dataset(config, 'test'):
    parts.append(batch)
    if sum(len(b['index']) for b in parts) >= limit:
      break
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:limit], *parts)


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


class Codec:
  """Jitted encode / decode / swap of one model (manipulate.py)."""

  def __init__(self, model):
    self.encode = jax.jit(functools.partial(manipulate.encode, model))
    self.decode = jax.jit(functools.partial(manipulate.decode, model))

  def swap(self, params, x_base, x_donor, labels_base, labels_donor,
           label: int):
    base = self.encode(params, x_base, labels_base)
    donor = self.encode(params, x_donor, labels_donor)
    return self.decode(params, manipulate.swap_label(base, donor, label))


def ideal_swaps(factors, base_idx, donor_idx, label: str,
                size: int) -> np.ndarray:
  """Ideal renders of base_idx[i] with the `label` of donor_idx[i].

  factors: batched procedural factors (name -> array with a leading axis).
  Returns (len(base_idx), size, size, 3).
  """
  examples = procedural.unstack_factors(factors)
  return np.stack([procedural.render_ideal_swap(examples[b], examples[d],
                                                label, size)
                   for b, d in zip(base_idx, donor_idx)])


def oracle_swap_errors(codec: Codec, params, data, label: int, name: str,
                       num_pairs: int, seed: int, batch_size: int):
  """MSE of fake+/fake- against the ideal render, and of doing nothing.

  Pairs (x_{y=0}, x_{y=1}) are drawn with a seeded RNG; swaps use the true
  labels (paper 3). Returns a dict of the four oracle numbers.
  """
  labels = data['label']
  zeros = np.flatnonzero(labels[:, label] == 0)
  ones = np.flatnonzero(labels[:, label] == 1)
  if not len(zeros) or not len(ones):
    return {}
  rng = np.random.default_rng(seed)
  i0 = rng.choice(zeros, num_pairs)
  i1 = rng.choice(ones, num_pairs)
  x = data['image']
  swap = lambda a, b, la, lb: codec.swap(params, a, b, la, lb, label)
  fake_plus = batched(swap, (x[i0], x[i1], labels[i0], labels[i1]),
                       batch_size)
  fake_minus = batched(swap, (x[i1], x[i0], labels[i1], labels[i0]),
                        batch_size)
  ideal_plus = ideal_swaps(data['factors'], i0, i1, name, x.shape[1])
  ideal_minus = ideal_swaps(data['factors'], i1, i0, name, x.shape[1])
  mse = lambda a, b: float(np.mean(np.square(a - b)))
  return {'oracle_swap_mse_plus': mse(fake_plus, ideal_plus),
          'oracle_swap_mse_minus': mse(fake_minus, ideal_minus),
          'oracle_identity_mse_plus': mse(x[i0], ideal_plus),
          'oracle_identity_mse_minus': mse(x[i1], ideal_minus)}


def evaluate(params, model, config,
             codec: Codec | None = None) -> dict[str, float]:
  """Flat dict: eval_reconstruction_mse, eval_accuracy_LABEL and, with
  factors available, eval_LABEL_oracle_* (see oracle_swap_errors)."""
  data = _collect(config, config.eval.num_examples)
  step = jax.jit(functools.partial(eval_step, model=model))
  out = batched(lambda x, l: step(params, {'image': x, 'label': l,
                                            'labelled': l >= 0}),
                 (data['image'], data['label']), config.eval.batch_size)
  results = {'eval_reconstruction_mse': float(out['sq_err'].mean())}
  codec = codec or Codec(model)
  for l, name in enumerate(config.data.labels):
    results[f'eval_accuracy_{name}'] = float(
        np.mean(out['pred'][:, l] == data['label'][:, l]))
    if 'factors' in data:
      errors = oracle_swap_errors(codec, params, data, l, name,
                                  config.eval.num_pairs, config.seed,
                                  config.eval.batch_size)
      results.update({f'eval_{name}_{k}': v for k, v in errors.items()})
  return results
